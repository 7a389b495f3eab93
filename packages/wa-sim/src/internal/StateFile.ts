/**
 * The optional state file: the root key and linked devices survive a restart of the sim. Writes are coalesced (a
 * burst of links writes once) and atomic (temporary file, then rename), so a crash never leaves half a file.
 */
import { Effect, Either, Schema } from "effect"
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { simError, type WaSimError } from "../WaSimError.js"
import { type Device, fromStateJson, type Snapshot, StateJsonFromString, toStateJson } from "./model.js"

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

/** The shortest wait between a change and its write. */
const MIN_DELAY_MS = 50
/** A write may take at most 1/WRITE_SHARE of the time between writes. */
const WRITE_SHARE = 20

/**
 * Writes are synchronous on purpose: the file holds no one-time prekeys, so it stays small (a few hundred bytes per
 * device), and a synchronous write can never race a later one or be cut short by a shutdown. The whole file is
 * written each time, so the wait between writes grows with what the last write cost (at most 1/20 of the sim's
 * time): with thousands of devices linking, writing every 50 ms would take most of a core.
 */
export const makeWriter = (path: string, snapshot: () => Snapshot, onError: (error: unknown) => void): StateWriter => {
  let dirty = false
  let timer: NodeJS.Timeout | undefined
  let delayMs = MIN_DELAY_MS
  const temporary = `${path}.tmp`
  const flush = () => {
    if (timer) clearTimeout(timer)
    timer = undefined
    if (!dirty) return
    dirty = false
    const started = performance.now()
    try {
      writeFileSync(temporary, encode(snapshot()), "utf8")
      renameSync(temporary, path)
    } catch (error) {
      onError(error)
    }
    delayMs = Math.max(MIN_DELAY_MS, WRITE_SHARE * (performance.now() - started))
  }
  return {
    schedule: () => {
      dirty = true
      timer ??= setTimeout(flush, delayMs)
    },
    flush
  }
}

/**
 * One-time prekeys live beside the state file, one small binary file per device (`<stateFile>.prekeys/<jid>`:
 * records of a 4-byte big-endian id and a 32-byte public key), written when the device uploads a batch and when
 * one is handed out to a contact. So after a restart the sim still holds what each device uploaded, as WhatsApp
 * does, and a reconnecting client is not made to upload 812 new prekeys.
 */
export interface PreKeyFiles {
  /** Fills each device's prekeys from its file, if it has one. */
  readonly restore: (devices: Iterable<Device>) => void
  /** Asks for the device's file to be written soon; many calls in a row write once. */
  readonly schedule: (device: Device) => void
  /** Removes an unlinked device's file. */
  readonly remove: (jid: string) => void
  /** Writes every file asked for and not written yet. */
  readonly flush: () => void
}

const RECORD = 36

export const makePreKeyFiles = (stateFile: string, onError: (error: unknown) => void): PreKeyFiles => {
  const dir = `${stateFile}.prekeys`
  const fileOf = (jid: string) => join(dir, encodeURIComponent(jid))
  const dirty = new Map<string, Device>()
  let timer: NodeJS.Timeout | undefined

  const write = (device: Device) => {
    const bytes = Buffer.alloc(device.keys.preKeys.size * RECORD)
    let offset = 0
    for (const [id, key] of device.keys.preKeys) {
      bytes.writeUInt32BE(id, offset)
      key.copy(bytes, offset + 4, 0, 32)
      offset += RECORD
    }
    const path = fileOf(device.jid)
    writeFileSync(`${path}.tmp`, bytes)
    renameSync(`${path}.tmp`, path)
  }

  const flush = () => {
    if (timer) clearTimeout(timer)
    timer = undefined
    if (dirty.size === 0) return
    const devices = [...dirty.values()]
    dirty.clear()
    try {
      mkdirSync(dir, { recursive: true })
      for (const device of devices) write(device)
    } catch (error) {
      onError(error)
    }
  }

  return {
    restore: (devices) => {
      for (const device of devices) {
        const path = fileOf(device.jid)
        if (!existsSync(path)) continue
        try {
          const bytes = readFileSync(path)
          for (let offset = 0; offset + RECORD <= bytes.length; offset += RECORD) {
            device.keys.preKeys.set(
              bytes.readUInt32BE(offset),
              Buffer.from(bytes.subarray(offset + 4, offset + RECORD))
            )
          }
        } catch (error) {
          // Without its prekeys the device uploads a new batch on its next login, as after WhatsApp ran out.
          onError(error)
        }
      }
    },
    schedule: (device) => {
      dirty.set(device.jid, device)
      timer ??= setTimeout(flush, 50)
    },
    remove: (jid) => {
      dirty.delete(jid)
      try {
        rmSync(fileOf(jid), { force: true })
      } catch (error) {
        onError(error)
      }
    },
    flush
  }
}
