/**
 * One of our TypeScript services (gateway, node) as a child process: `node --enable-source-maps <bundle>` from the
 * repo root (the entry bundled, see Bundle.ts), in its own process group, logs prefixed with its name, considered
 * started once its health URL answers 200.
 * Closing the scope sends SIGTERM to the group, waits up to 10 s, then SIGKILLs it.
 */
import { Data, Duration, Effect } from "effect"
import { access } from "node:fs/promises"
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { bundle } from "./Bundle.js"
import { type OwnedProcess, releaseOnFailure, spawnOwned } from "./internal/ChildProcess.js"
import { awaitReady, formatTail, httpOk } from "./internal/Readiness.js"

/** The monorepo root (this file is infra/src/Service.ts); tsx is resolved from here. */
export const repoRoot: string = fileURLToPath(new URL("../../", import.meta.url))

export class ServiceStartError extends Data.TaggedError("ServiceStartError")<{
  readonly service: string
  readonly reason: string
  readonly logTail: ReadonlyArray<string>
}> {
  override get message() {
    return `${this.service} did not start: ${this.reason}\n${formatTail(this.logTail)}`
  }
}

/**
 * Where a service's log lines go. "inherit": the parent's stdout with a `name |` prefix; "quiet": nowhere (the
 * last lines are kept and shown if startup fails); a function: each line, unprefixed.
 */
export type ServiceOutput = "inherit" | "quiet" | ((line: string) => void)

export interface ServiceOptions {
  readonly name: string
  /** Entry file, relative to the repo root or absolute. */
  readonly entry: string
  /** Merged over the current environment. */
  readonly env?: Readonly<Record<string, string>> | undefined
  readonly healthUrl: string
  /** Defaults to "quiet" under vitest (tests should not spam the console) and "inherit" elsewhere. */
  readonly output?: ServiceOutput | undefined
  /** Width the name is padded to, so the `|` of several services line up. */
  readonly prefixWidth?: number | undefined
  readonly startTimeout?: Duration.DurationInput | undefined
  readonly stopGrace?: Duration.DurationInput | undefined
}

export interface ServiceProcess {
  readonly name: string
  readonly pid: number
  /** Signals the whole process group without waiting (SIGSTOP/SIGCONT for chaos tests, SIGKILL for crashes). */
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Sends `signal` (SIGTERM by default), SIGKILLs after the grace period, resolves with the exit code. */
  readonly stop: (signal?: NodeJS.Signals) => Effect.Effect<number>
  /** The exit code once it has exited (128 + signal number when a signal ended it). */
  readonly exited: Effect.Effect<number>
  readonly recentLogs: Effect.Effect<ReadonlyArray<string>>
}

const palette = [36, 33, 32, 35, 34, 96, 93, 92, 95, 94]

const colorOf = (name: string) => {
  let hash = 0
  for (const char of name) hash = (hash * 31 + char.charCodeAt(0)) >>> 0
  return palette[hash % palette.length] ?? 36
}

const useColor = () =>
  process.env.NO_COLOR === undefined && (process.stdout.isTTY || process.env.FORCE_COLOR !== undefined)

/** `name |` padded to `width`, colored when stdout is a terminal. */
export const linePrefix = (name: string, width: number, color = useColor()): string => {
  const tag = `${name.padEnd(width)} |`
  return color ? `\x1b[${colorOf(name)}m${tag}\x1b[0m` : tag
}

const sinkFor = (options: ServiceOptions): ((line: string) => void) | undefined => {
  const output = options.output ?? (process.env.VITEST !== undefined ? "quiet" : "inherit")
  if (output === "quiet") return undefined
  if (output !== "inherit") return output
  const prefix = linePrefix(options.name, options.prefixWidth ?? options.name.length)
  return (line) => process.stdout.write(`${prefix} ${line}\n`)
}

/**
 * V8's young generation, per half (MB; Node's default is 16). A node or gateway under thousands of requests a second
 * makes short-lived objects fast; with the default, collections come so often that what is still in flight survives
 * them and is copied: measured at 2,000 sends/s (bench:send), the node spent 26% of its time collecting, and its
 * CPU per send fell by about 15% and the p99 latency by half or more with 64.
 */
const SEMI_SPACE_MB = 64

export const start = Effect.fn("Service.start")(function*(options: ServiceOptions) {
  const entry = resolve(repoRoot, options.entry)
  const present = yield* Effect.promise(() => access(entry).then(() => true, () => false))
  if (!present) {
    return yield* new ServiceStartError({ service: options.name, reason: `entry ${entry} does not exist`, logTail: [] })
  }
  const bundled = yield* bundle(repoRoot, entry).pipe(
    Effect.mapError((error) => new ServiceStartError({ service: options.name, reason: error.message, logTail: [] }))
  )
  return yield* releaseOnFailure(Effect.gen(function*() {
    const owned: OwnedProcess = yield* spawnOwned({
      label: options.name,
      command: process.execPath,
      args: ["--enable-source-maps", `--max-semi-space-size=${SEMI_SPACE_MB}`, bundled],
      cwd: repoRoot,
      env: { ...process.env, ...options.env },
      onLine: sinkFor(options),
      stop: { signal: "SIGTERM", target: "group", grace: options.stopGrace ?? "10 seconds" }
    }).pipe(
      Effect.mapError((error) => new ServiceStartError({ service: options.name, reason: error.message, logTail: [] }))
    )

    yield* awaitReady(owned, httpOk(options.healthUrl), { timeout: options.startTimeout ?? "30 seconds" }).pipe(
      Effect.catchAll((notReady) =>
        Effect.flatMap(owned.recentLines, (logTail) =>
          new ServiceStartError({
            service: options.name,
            reason: notReady._tag === "ProcessExited"
              ? `it exited with code ${notReady.exitCode} before ${options.healthUrl} answered 200`
              : `${options.healthUrl} did not answer 200 within ${Duration.format(notReady.after)}`,
            logTail
          }))
      ),
      Effect.annotateLogs({ service: options.name })
    )

    // With its output kept quiet (tests), a process that dies on its own would leave no trace: say so, with its last
    // lines, on stderr.
    let signalled = false
    // Runs before the process's own finalizer, which stops it when the scope closes.
    yield* Effect.addFinalizer(() => Effect.sync(() => (signalled = true)))
    if (sinkFor(options) === undefined) {
      yield* owned.exited.pipe(
        Effect.flatMap((code) =>
          signalled ? Effect.void : Effect.flatMap(owned.recentLines, (tail) =>
            Effect.sync(() => {
              process.stderr.write(
                `${options.name} (pid ${owned.pid}) exited on its own with code ${code}; its last log lines:\n` +
                  `${tail.map((line) => `  ${line}`).join("\n")}\n`
              )
            }))
        ),
        Effect.forkDaemon
      )
    }

    const service: ServiceProcess = {
      name: options.name,
      pid: owned.pid,
      kill: (signal) => Effect.suspend(() => ((signalled = true), owned.signal(signal, "group"))),
      stop: (signal) => Effect.suspend(() => ((signalled = true), owned.stop(signal))),
      exited: owned.exited,
      recentLogs: owned.recentLines
    }
    return service
  }))
})
