/**
 * A private Postgres server owned by a Scope. We run the `postgres` binary ourselves (not pg_ctl) so the pid we
 * hold is the postmaster's: the scope's close sends SIGINT (fast shutdown) and SIGKILLs the group after 10 s.
 * Only TCP on 127.0.0.1 is enabled, so it never collides with a system server's Unix socket.
 */
import { Duration, Effect, Schedule } from "effect"
import { access } from "node:fs/promises"
import { join, resolve } from "node:path"
import { binDir, findBinary, postgresClientDirs, postgresSearchDirs } from "./Binaries.js"
import { ensurePortFree, freePort, PortInUse } from "./FreePort.js"
import { type OwnedProcess, releaseOnFailure, type RunAs, runCommand, spawnOwned } from "./internal/ChildProcess.js"
import { clearLeftovers } from "./internal/Leftovers.js"
import { prepareDataDir, resolveRunAs } from "./internal/PostgresAccount.js"
import { PostgresError } from "./internal/PostgresError.js"
import * as Psql from "./internal/Psql.js"
import { awaitReady } from "./internal/Readiness.js"

export { PostgresError } from "./internal/PostgresError.js"
export const databaseUrl = Psql.databaseUrl

export interface PostgresOptions {
  /** Data directory; initialised with initdb when it has no PG_VERSION, reused otherwise. */
  readonly dataDir: string
  /** A free port when omitted. */
  readonly port?: number | undefined
  /** false trades durability for speed (tests): fsync, synchronous_commit and full_page_writes off. */
  readonly fsync?: boolean | undefined
  /** Where to look for initdb; PATH, then /usr/lib/postgresql/<highest>/bin by default. */
  readonly binDirs?: ReadonlyArray<string> | undefined
  readonly startTimeout?: Duration.DurationInput | undefined
  readonly onLine?: ((line: string) => void) | undefined
}

export interface PostgresServer {
  /** The admin URL: superuser `postgres`, database `postgres`, trust auth on 127.0.0.1. */
  readonly url: string
  readonly port: number
  readonly pid: number
  readonly process: OwnedProcess
  /** Creates database `name` and returns its URL. */
  readonly createDatabase: (name: string) => Effect.Effect<string, PostgresError>
  /** Like createDatabase, but an existing database is fine. */
  readonly ensureDatabase: (name: string) => Effect.Effect<string, PostgresError>
  readonly dropDatabase: (name: string) => Effect.Effect<void, PostgresError>
}

interface Binaries {
  readonly initdb: string
  readonly postgres: string
  readonly pgIsready: string
  readonly psql: string
}

/** initdb decides the installation; its siblings come from the same directory so versions always match. */
const locateBinaries = Effect.fn("Postgres.locateBinaries")(function*(dirs: ReadonlyArray<string> | undefined) {
  const searched = dirs ?? (yield* postgresSearchDirs)
  const initdb = yield* findBinary({ name: "initdb", debianPackage: "postgresql", dirs: searched })
  const sibling = (name: string) =>
    findBinary({ name, debianPackage: "postgresql", dirs: [binDir(initdb), ...searched] })
  const binaries: Binaries = {
    initdb,
    postgres: yield* sibling("postgres"),
    pgIsready: yield* sibling("pg_isready"),
    psql: yield* sibling("psql")
  }
  return binaries
})

const exists = (file: string) => Effect.promise(() => access(file).then(() => true, () => false))

const initdb = Effect.fn("Postgres.initdb")(function*(
  binaries: Binaries,
  options: PostgresOptions,
  runAs: RunAs | undefined
) {
  const run = (locale: ReadonlyArray<string>) =>
    runCommand({
      command: binaries.initdb,
      args: [
        "-D",
        options.dataDir,
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        ...locale,
        ...(options.fsync === false ? ["--no-sync"] : [])
      ],
      cwd: "/",
      runAs
    }).pipe(Effect.mapError((error) => new PostgresError({ reason: error.message })))
  let result = yield* run(["--locale=C.UTF-8"])
  // Minimal images may lack the C.UTF-8 locale; initdb then removed what it created, so just retry without one.
  if (result.exitCode !== 0 && /locale/i.test(result.stderr)) result = yield* run(["--no-locale"])
  if (result.exitCode !== 0) {
    return yield* new PostgresError({
      reason: `initdb -D ${options.dataDir} failed (exit ${result.exitCode})`,
      logTail: `${result.stdout}\n${result.stderr}`.trim().split("\n")
    })
  }
})

const isPortClash = (lines: ReadonlyArray<string>) => lines.some((line) => /address already in use/i.test(line))

const pgIsready = (binary: string, port: number) =>
  runCommand({
    command: binary,
    args: ["-q", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres", "-t", "2"]
  }).pipe(
    Effect.map((result) => result.exitCode === 0),
    Effect.orElseSucceed(() => false)
  )

const serverArgs = (options: PostgresOptions, port: number): ReadonlyArray<string> => [
  "-D",
  options.dataDir,
  "-p",
  String(port),
  "-c",
  "listen_addresses=127.0.0.1",
  // No Unix socket at all: nothing to own in /var/run/postgresql, and no path-length limit on deep temp dirs.
  "-c",
  "unix_socket_directories=",
  "-c",
  "max_connections=200",
  ...(options.fsync === false
    ? ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    : [])
]

export const start = Effect.fn("Postgres.start")(function*(given: PostgresOptions) {
  const options: PostgresOptions = { ...given, dataDir: resolve(given.dataDir) }
  const binaries = yield* locateBinaries(options.binDirs)
  const runAs = yield* resolveRunAs
  yield* prepareDataDir(options.dataDir, runAs)
  if (!(yield* exists(join(options.dataDir, "PG_VERSION")))) yield* initdb(binaries, options, runAs)
  yield* clearLeftovers({
    what: "postgres",
    binary: "postgres",
    args: ["-D", options.dataDir],
    dataDir: options.dataDir,
    signal: "SIGINT"
  })
  if (options.port !== undefined) yield* ensurePortFree(options.port, "postgres")

  const attempt = releaseOnFailure(Effect.gen(function*() {
    const port = options.port ?? (yield* freePort)
    const owned = yield* spawnOwned({
      label: "postgres",
      command: binaries.postgres,
      args: serverArgs(options, port),
      cwd: "/",
      runAs,
      onLine: options.onLine,
      stop: { signal: "SIGINT", target: "process", grace: "10 seconds" }
    }).pipe(Effect.mapError((error) => new PostgresError({ reason: error.message })))
    yield* awaitReady(owned, pgIsready(binaries.pgIsready, port), {
      timeout: options.startTimeout ?? "60 seconds",
      interval: "100 millis"
    }).pipe(
      Effect.catchAll((notReady) =>
        Effect.flatMap(
          owned.recentLines,
          (logTail): Effect.Effect<never, PortInUse | PostgresError> =>
            isPortClash(logTail)
              ? Effect.fail(new PortInUse({ port, wanted: "postgres" }))
              : Effect.fail(
                new PostgresError({
                  reason: notReady._tag === "ProcessExited"
                    ? `the server exited with code ${notReady.exitCode} during startup`
                    : `not accepting connections after ${Duration.format(notReady.after)}`,
                  logTail
                })
              )
        )
      )
    )
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`
    const server: PostgresServer = {
      url,
      port,
      pid: owned.pid,
      process: owned,
      createDatabase: (name) => Psql.createDatabase(binaries.psql, url, name),
      ensureDatabase: (name) => Psql.ensureDatabase(binaries.psql, url, name),
      dropDatabase: (name) => Psql.dropDatabase(binaries.psql, url, name)
    }
    return server
  }))

  // A free port can be taken between probing and binding; only retry when we picked the port ourselves.
  return yield* attempt.pipe(
    Effect.retry({
      schedule: Schedule.recurs(3),
      while: (error) => error._tag === "PortInUse" && options.port === undefined
    })
  )
})

const psqlBinary = (binDirs: ReadonlyArray<string> | undefined) =>
  Effect.flatMap(
    binDirs === undefined ? postgresClientDirs : Effect.succeed(binDirs),
    (dirs) => findBinary({ name: "psql", debianPackage: "postgresql", dirs })
  )

/** Creates database `name` on the server at `adminUrl` (any reachable server); returns the new database's URL. */
export const createDatabase = Effect.fn("Postgres.createDatabase")(function*(
  adminUrl: string,
  name: string,
  options?: { readonly binDirs?: ReadonlyArray<string> }
) {
  return yield* Psql.createDatabase(yield* psqlBinary(options?.binDirs), adminUrl, name)
})

export const ensureDatabase = Effect.fn("Postgres.ensureDatabase")(function*(
  adminUrl: string,
  name: string,
  options?: { readonly binDirs?: ReadonlyArray<string> }
) {
  return yield* Psql.ensureDatabase(yield* psqlBinary(options?.binDirs), adminUrl, name)
})

/** Drops database `name`, disconnecting its clients first. */
export const dropDatabase = Effect.fn("Postgres.dropDatabase")(function*(
  adminUrl: string,
  name: string,
  options?: { readonly binDirs?: ReadonlyArray<string> }
) {
  yield* Psql.dropDatabase(yield* psqlBinary(options?.binDirs), adminUrl, name)
})
