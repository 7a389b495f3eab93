/**
 * Postgres refuses to run as root. When we are root (CI, containers) the server and initdb run as the `postgres`
 * system user that the Debian package creates, which needs to own the data directory and be able to reach it.
 */
import { Effect } from "effect"
import { chmod, mkdir, stat } from "node:fs/promises"
import { dirname, resolve } from "node:path"
import { type RunAs, runCommand } from "./ChildProcess.js"
import { PostgresError } from "./PostgresError.js"

const isRoot = () => process.getuid?.() === 0

/** `undefined` when we are not root (run as ourselves); the postgres user's ids when we are. */
export const resolveRunAs: Effect.Effect<RunAs | undefined, PostgresError> = Effect.gen(function*() {
  if (!isRoot()) return undefined
  const result = yield* runCommand({ command: "getent", args: ["passwd", "postgres"] }).pipe(
    Effect.mapError((error) => new PostgresError({ reason: error.message }))
  )
  const fields = result.stdout.trim().split(":")
  const uid = Number(fields[2])
  const gid = Number(fields[3])
  if (result.exitCode !== 0 || !Number.isInteger(uid) || !Number.isInteger(gid) || fields[2] === "") {
    return yield* new PostgresError({
      reason: "we run as root, postgres refuses to run as root, and there is no \"postgres\" system user to run it " +
        "as. Install the Debian package \"postgresql\" (infra/setup.sh does), which creates that user, or run as " +
        "a non-root user."
    })
  }
  return { uid, gid }
})

/**
 * Every ancestor of `dir` must be searchable (x) by the postgres user. Directories made by mkdtemp (0700) or a
 * repository under /root are not, so we add o+x only (no read: listing stays private).
 */
const makeTraversable = (dir: string) =>
  Effect.promise(async () => {
    const changed: Array<string> = []
    let current = dirname(resolve(dir))
    for (;;) {
      const info = await stat(current)
      if ((info.mode & 0o001) === 0) {
        await chmod(current, (info.mode & 0o7777) | 0o001)
        changed.push(current)
      }
      const parent = dirname(current)
      if (parent === current) return changed
      current = parent
    }
  })

/** Creates the data directory (0700, as postgres wants) and hands it to the user the server will run as. */
export const prepareDataDir = (dataDir: string, runAs: RunAs | undefined) =>
  Effect.gen(function*() {
    yield* Effect.promise(() => mkdir(dataDir, { recursive: true, mode: 0o700 }))
    if (runAs === undefined) return
    const changed = yield* makeTraversable(dataDir)
    if (changed.length > 0) {
      yield* Effect.logInfo(`made ${changed.join(", ")} traversable (o+x) so the postgres user can reach its data`)
    }
    const owner = yield* Effect.promise(() => stat(dataDir))
    if (owner.uid !== runAs.uid) {
      const chown = yield* runCommand({ command: "chown", args: ["-R", `${runAs.uid}:${runAs.gid}`, dataDir] }).pipe(
        Effect.mapError((error) => new PostgresError({ reason: error.message }))
      )
      if (chown.exitCode !== 0) {
        return yield* new PostgresError({ reason: `chown ${dataDir} failed: ${chown.stderr.trim()}` })
      }
    }
  })
