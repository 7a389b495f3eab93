/**
 * The optional state file: the root key and linked devices survive a restart of the sim. Writes are coalesced (a
 * burst of links writes once) and atomic (temporary file, then rename), so a crash never leaves half a file.
 */
import { Effect, Either, Schema } from "effect"
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import { simError, type WaSimError } from "../WaSimError.js"
import { fromStateJson, type Snapshot, StateJsonFromString, toStateJson } from "./model.js"

const encode = (snapshot: Snapshot): string =>
  JSON.stringify(Schema.encodeSync(StateJsonFromString.to)(toStateJson(snapshot)))

export const load = (path: string): Effect.Effect<Snapshot | undefined, WaSimError> =>
  Effect.gen(function*() {
    if (!existsSync(path)) return undefined
    const text = yield* Effect.try({
      try: () => readFileSync(path, "utf8"),
      catch: (cause) => simError("state_file_invalid", `cannot read the state file ${path}`, cause)
    })
    const decoded = Schema.decodeEither(StateJsonFromString)(text)
    if (Either.isLeft(decoded)) {
      return yield* simError("state_file_invalid", `the state file ${path} is not a wa-sim state file`, decoded.left)
    }
    return fromStateJson(decoded.right)
  })

export interface StateWriter {
  /** Asks for a write soon; many calls in a row write once. */
  readonly schedule: () => void
  /** Writes now if anything changed since the last write. */
  readonly flush: () => void
}

/**
 * Writes are synchronous on purpose: the file holds no one-time prekeys, so it stays small (a few hundred bytes per
 * device), and a synchronous write can never race a later one or be cut short by a shutdown.
 */
export const makeWriter = (path: string, snapshot: () => Snapshot, onError: (error: unknown) => void): StateWriter => {
  let dirty = false
  let timer: NodeJS.Timeout | undefined
  const temporary = `${path}.tmp`
  const flush = () => {
    if (timer) clearTimeout(timer)
    timer = undefined
    if (!dirty) return
    dirty = false
    try {
      writeFileSync(temporary, encode(snapshot()), "utf8")
      renameSync(temporary, path)
    } catch (error) {
      onError(error)
    }
  }
  return {
    schedule: () => {
      dirty = true
      timer ??= setTimeout(flush, 50)
    },
    flush
  }
}
