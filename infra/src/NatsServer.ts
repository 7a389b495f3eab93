/**
 * A private nats-server with JetStream, owned by a Scope: started on a free port (or the one asked for), ready
 * once its monitoring endpoint reports healthy, stopped with SIGTERM (SIGKILL after 5 s) when the scope closes.
 */
import { Data, Duration, Effect, Schedule } from "effect"
import { mkdir } from "node:fs/promises"
import { resolve } from "node:path"
import { findBinary, natsSearchDirs } from "./Binaries.js"
import { ensurePortFree, freePort, PortInUse } from "./FreePort.js"
import { type OwnedProcess, releaseOnFailure, spawnOwned } from "./internal/ChildProcess.js"
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
  readonly pid: number
  readonly process: OwnedProcess
}

const isPortClash = (lines: ReadonlyArray<string>) => lines.some((line) => /address already in use/i.test(line))

export const start = Effect.fn("NatsServer.start")(function*(options: NatsServerOptions) {
  const binary = yield* findBinary({
    name: "nats-server",
    debianPackage: "nats-server",
    dirs: options.binDirs ?? natsSearchDirs()
  })
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

  const attempt = releaseOnFailure(Effect.gen(function*() {
    const port = options.port ?? (yield* freePort)
    const monitorPort = yield* freePort
    const owned = yield* spawnOwned({
      label: "nats-server",
      command: binary,
      args: ["-a", host, "-p", String(port), "-m", String(monitorPort), "-js", "-sd", dataDir],
      onLine: options.onLine,
      stop: { signal: "SIGTERM", target: "process", grace: "5 seconds" }
    })
    yield* awaitReady(owned, httpOk(`http://127.0.0.1:${monitorPort}/healthz?js-enabled-only=true`), {
      timeout: options.startTimeout ?? "30 seconds"
    }).pipe(
      Effect.catchAll((notReady) =>
        Effect.flatMap(
          owned.recentLines,
          (logTail): Effect.Effect<never, PortInUse | NatsServerError> =>
            isPortClash(logTail)
              ? Effect.fail(new PortInUse({ port, wanted: "nats-server" }))
              : Effect.fail(
                new NatsServerError({
                  reason: notReady._tag === "ProcessExited"
                    ? `it exited with code ${notReady.exitCode}`
                    : `not healthy after ${Duration.format(notReady.after)}`,
                  logTail
                })
              )
        )
      )
    )
    const server: NatsServer = { url: `nats://${host}:${port}`, port, monitorPort, pid: owned.pid, process: owned }
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
