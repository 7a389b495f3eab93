/**
 * A private nats-server with JetStream, owned by a Scope: started on a free port (or the one asked for), ready
 * once its monitoring endpoint reports healthy, stopped with SIGTERM (SIGKILL after 5 s) when the scope closes.
 * While the scope is open it can be killed and started again on the same ports and storage (chaos tests).
 * NatsCluster runs several of these processes with the same machinery (`supervise`).
 */
import { Data, Duration, Effect, ExecutionStrategy, Exit, Schedule, Scope } from "effect"
import { mkdir } from "node:fs/promises"
import { resolve } from "node:path"
import { findBinary, natsSearchDirs } from "./Binaries.js"
import { ensurePortFree, freePort, PortInUse } from "./FreePort.js"
import { type OwnedProcess, releaseOnFailure, type SpawnError, spawnOwned } from "./internal/ChildProcess.js"
import { clearLeftovers } from "./internal/Leftovers.js"
import { awaitReady, formatTail, httpOk } from "./internal/Readiness.js"

export class NatsServerError extends Data.TaggedError("NatsServerError")<{
  readonly reason: string
  readonly logTail: ReadonlyArray<string>
}> {
  override get message() {
    return `nats-server did not start: ${this.reason}\n${formatTail(this.logTail)}`
  }
}

export type NatsStartError = NatsServerError | PortInUse | SpawnError

export interface NatsServerOptions {
  /** JetStream storage (`-sd`); created if missing, reused if present. */
  readonly dataDir: string
  /** Client port; a free one when omitted. */
  readonly port?: number | undefined
  readonly host?: string | undefined
  /** Where to look for the binary; PATH plus the sbin directories by default. */
  readonly binDirs?: ReadonlyArray<string> | undefined
  readonly startTimeout?: Duration.DurationInput | undefined
  /** Receives every log line (the last 200 are kept for error messages either way). */
  readonly onLine?: ((line: string) => void) | undefined
}

export interface NatsServer {
  readonly url: string
  readonly port: number
  readonly monitorPort: number
  /** The running process (after `kill`, the one that was killed, until `restart`). */
  readonly pid: number
  readonly process: OwnedProcess
  /**
   * Stops the server with `signal` (default SIGKILL: a crash; SIGKILL after 5 s for any other signal) and
   * resolves with its exit code. Does nothing but report the exit code when it is not running.
   */
  readonly kill: (signal?: NodeJS.Signals) => Effect.Effect<number>
  /**
   * Starts it again on the same ports, configuration and storage and waits until it is ready; does nothing while
   * it runs. A clustered server is only ready once it sees a JetStream meta leader, which needs a majority of the
   * cluster: restart several stopped servers concurrently, not one after the other.
   */
  readonly restart: Effect.Effect<void, NatsStartError>
  /** Whether the process is alive right now. */
  readonly isRunning: Effect.Effect<boolean>
}

/** What it takes to start one nats-server process and to know that it is ready. */
export interface LaunchSpec {
  /** How logs and errors name the process, e.g. "nats-server" or "nats-2". */
  readonly label: string
  readonly binary: string
  readonly args: ReadonlyArray<string>
  /** The ports it binds; a clash on one of them becomes PortInUse. */
  readonly ports: ReadonlyArray<number>
  readonly ready: Effect.Effect<boolean>
  readonly startTimeout: Duration.DurationInput
  readonly onLine?: ((line: string) => void) | undefined
}

/** One nats-server process that can be killed and started again within the scope it was supervised in. */
export interface Supervised {
  readonly process: OwnedProcess
  readonly kill: NatsServer["kill"]
  readonly restart: NatsServer["restart"]
  readonly isRunning: Effect.Effect<boolean>
}

/** The nats-server binary: PATH plus the sbin directories unless `binDirs` is given. */
export const findNatsServer = (binDirs?: ReadonlyArray<string>) =>
  findBinary({ name: "nats-server", debianPackage: "nats-server", dirs: binDirs ?? natsSearchDirs() })

/** The port nats-server could not bind, from its log ("listen tcp 127.0.0.1:4222: bind: address already in use"). */
const clashedPort = (lines: ReadonlyArray<string>, ours: ReadonlyArray<number>): number | undefined => {
  const clash = lines.find((line) => /address already in use/i.test(line))
  if (clash === undefined) return undefined
  const port = Number(/:(\d+):? bind: address already in use/i.exec(clash)?.[1])
  return ours.includes(port) ? port : ours[0] ?? port
}

/** Spawns the process and waits until it is ready; a process that never gets ready is stopped again. */
const launch = (spec: LaunchSpec): Effect.Effect<OwnedProcess, NatsStartError, Scope.Scope> =>
  releaseOnFailure(Effect.gen(function*() {
    const owned = yield* spawnOwned({
      label: spec.label,
      command: spec.binary,
      args: spec.args,
      onLine: spec.onLine,
      stop: { signal: "SIGTERM", target: "process", grace: "5 seconds" }
    })
    yield* awaitReady(owned, spec.ready, { timeout: spec.startTimeout }).pipe(
      Effect.catchAll((notReady) =>
        Effect.flatMap(owned.recentLines, (logTail): Effect.Effect<never, PortInUse | NatsServerError> => {
          const port = clashedPort(logTail, spec.ports)
          if (port !== undefined) return Effect.fail(new PortInUse({ port, wanted: spec.label }))
          return Effect.fail(
            new NatsServerError({
              reason: notReady._tag === "ProcessExited"
                ? `${spec.label} exited with code ${notReady.exitCode}`
                : `${spec.label} was not ready after ${Duration.format(notReady.after)}`,
              logTail
            })
          )
        })
      )
    )
    return owned
  }))

/**
 * Starts `spec` in a scope of its own inside the current one, so that `kill` and `restart` can end and repeat the
 * process while the current scope stays open; closing the current scope stops whatever runs then.
 */
export const supervise = (spec: LaunchSpec): Effect.Effect<Supervised, NatsStartError, Scope.Scope> =>
  Effect.gen(function*() {
    const lock = yield* Effect.makeSemaphore(1)
    // Each run gets a scope of its own, closed by one finalizer registered now: a server restarted later still
    // stops where the first one would have (after the services started after it), not first.
    const startOnce = Effect.gen(function*() {
      const scope = yield* Scope.make(ExecutionStrategy.sequential)
      const owned = yield* launch(spec).pipe(
        Scope.extend(scope),
        Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void))
      )
      return { owned, scope }
    })
    let current = yield* startOnce
    yield* Effect.addFinalizer(() => Effect.suspend(() => Scope.close(current.scope, Exit.void)))

    const kill = (signal: NodeJS.Signals = "SIGKILL") =>
      lock.withPermits(1)(Effect.gen(function*() {
        // An exited process is not signalled again: its pid (and group id) may belong to someone else by now.
        const exitCode = (yield* current.owned.hasExited)
          ? yield* current.owned.exited
          : yield* current.owned.stop(signal, "5 seconds")
        yield* Scope.close(current.scope, Exit.void)
        return exitCode
      })).pipe(Effect.withSpan("NatsServer.kill", { attributes: { server: spec.label, signal } }))

    const restart = lock.withPermits(1)(Effect.gen(function*() {
      if (!(yield* current.owned.hasExited)) return
      yield* Scope.close(current.scope, Exit.void)
      current = yield* startOnce
    })).pipe(Effect.withSpan("NatsServer.restart", { attributes: { server: spec.label } }))

    const supervised: Supervised = {
      get process() {
        return current.owned
      },
      kill,
      restart,
      isRunning: Effect.suspend(() => Effect.map(current.owned.hasExited, (exited) => !exited))
    }
    return supervised
  })

export const start = Effect.fn("NatsServer.start")(function*(options: NatsServerOptions) {
  const binary = yield* findNatsServer(options.binDirs)
  const host = options.host ?? "127.0.0.1"
  const dataDir = resolve(options.dataDir)
  yield* Effect.promise(() => mkdir(dataDir, { recursive: true }))
  yield* clearLeftovers({
    what: "nats-server",
    binary: "nats-server",
    args: ["-sd", dataDir],
    dataDir,
    signal: "SIGTERM"
  })
  if (options.port !== undefined) yield* ensurePortFree(options.port, "nats-server")

  const attempt = Effect.gen(function*() {
    const port = options.port ?? (yield* freePort)
    const monitorPort = yield* freePort
    const supervised = yield* supervise({
      label: "nats-server",
      binary,
      args: ["-a", host, "-p", String(port), "-m", String(monitorPort), "-js", "-sd", dataDir],
      ports: [port, monitorPort],
      ready: httpOk(`http://127.0.0.1:${monitorPort}/healthz?js-enabled-only=true`),
      startTimeout: options.startTimeout ?? "30 seconds",
      onLine: options.onLine
    })
    const server: NatsServer = {
      url: `nats://${host}:${port}`,
      port,
      monitorPort,
      get pid() {
        return supervised.process.pid
      },
      get process() {
        return supervised.process
      },
      kill: supervised.kill,
      restart: supervised.restart,
      isRunning: supervised.isRunning
    }
    return server
  })

  // A free port can be taken between probing and binding; only retry when we picked the port ourselves.
  return yield* attempt.pipe(
    Effect.retry({
      schedule: Schedule.recurs(3),
      while: (error) => error._tag === "PortInUse" && options.port === undefined
    })
  )
})
