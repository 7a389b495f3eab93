/**
 * The one place that touches `node:child_process`. Every long-lived process (nats-server, postgres, services) is
 * spawned here as the leader of its own process group, tied to a Scope, and stopped with a grace period followed
 * by SIGKILL of the whole group, so nothing it started outlives it. If this Node process dies without closing its
 * scopes, the Watchdog stops them instead.
 */
import { Data, Deferred, type Duration, Effect, ExecutionStrategy, Exit, Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { constants as osConstants } from "node:os"
import { createInterface } from "node:readline"
import { formatTail } from "./Readiness.js"
import * as Watchdog from "./Watchdog.js"

export class SpawnError extends Data.TaggedError("SpawnError")<{
  readonly command: string
  readonly cause: unknown
}> {
  override get message() {
    return `could not start ${this.command}: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

export interface RunAs {
  readonly uid: number
  readonly gid: number
}

export interface StopPolicy {
  readonly signal: NodeJS.Signals
  /** "process" signals only the leader (postgres' postmaster shuts its children down itself). */
  readonly target: "process" | "group"
  readonly grace: Duration.DurationInput
}

export interface SpawnOptions {
  /** How logs and errors name the process; the command by default. */
  readonly label?: string | undefined
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly cwd?: string | undefined
  readonly env?: NodeJS.ProcessEnv | undefined
  readonly runAs?: RunAs | undefined
  readonly onLine?: ((line: string) => void) | undefined
  readonly tailLines?: number | undefined
  readonly stop: StopPolicy
}

export interface OwnedProcess {
  readonly pid: number
  /** Exit code once the process is gone; 128 + signal number when a signal ended it. */
  readonly exited: Effect.Effect<number>
  readonly hasExited: Effect.Effect<boolean>
  /** Waits (briefly) for stdout/stderr to be drained, then returns the last lines. */
  readonly recentLines: Effect.Effect<ReadonlyArray<string>>
  readonly signal: (signal: NodeJS.Signals, target?: "process" | "group") => Effect.Effect<void>
  /** Sends `signal`, waits `grace`, then SIGKILLs the group; resolves with the exit code. */
  readonly stop: (signal?: NodeJS.Signals, grace?: Duration.DurationInput) => Effect.Effect<number>
}

const signalQuietly = (pid: number, signal: NodeJS.Signals) => {
  try {
    process.kill(pid, signal)
  } catch {
    // ESRCH: already gone, which is what we wanted.
  }
}

const exitCodeOf = (code: number | null, signal: NodeJS.Signals | null): number =>
  code ?? (signal ? 128 + (osConstants.signals[signal] ?? 0) : 1)

const appendLine = (tail: Array<string>, max: number, line: string) => {
  tail.push(line)
  if (tail.length > max) tail.splice(0, tail.length - max)
}

const pipeLines = (child: ChildProcess, onLine: (line: string) => void) => {
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) createInterface({ input: stream, crlfDelay: Infinity }).on("line", onLine)
  }
}

/** Spawns a process in its own group and stops it (and its group) when the scope closes. */
export const spawnOwned = (options: SpawnOptions): Effect.Effect<OwnedProcess, SpawnError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const exited = yield* Deferred.make<number>()
      const drained = yield* Deferred.make<void>()
      const tail: Array<string> = []
      const max = options.tailLines ?? 200

      const child = yield* Effect.async<ChildProcess, SpawnError>((resume) => {
        const child = spawn(options.command, [...options.args], {
          cwd: options.cwd,
          env: options.env ?? process.env,
          // Own session and process group: a terminal's Ctrl-C does not reach it (we decide the shutdown order)
          // and process.kill(-pid) reaches everything it started.
          detached: true,
          stdio: ["ignore", "pipe", "pipe"],
          ...(options.runAs ? { uid: options.runAs.uid, gid: options.runAs.gid } : {})
        })
        let settled = false
        child.once("spawn", () => {
          settled = true
          resume(Effect.succeed(child))
        })
        child.on("error", (cause) => {
          if (settled) return
          settled = true
          resume(Effect.fail(new SpawnError({ command: options.command, cause })))
        })
        child.once("exit", (code, signal) => {
          if (child.pid !== undefined) Watchdog.unregister(child.pid)
          Deferred.unsafeDone(exited, Exit.succeed(exitCodeOf(code, signal)))
        })
        child.once("close", () => Deferred.unsafeDone(drained, Exit.void))
        pipeLines(child, (line) => {
          appendLine(tail, max, line)
          options.onLine?.(line)
        })
      })
      const pid = child.pid
      if (pid === undefined) {
        return yield* new SpawnError({ command: options.command, cause: new Error("no pid after spawn") })
      }
      Watchdog.register(pid, options.stop.signal)

      const signal = (sig: NodeJS.Signals, target: "process" | "group" = "group") =>
        Effect.sync(() => signalQuietly(target === "group" ? -pid : pid, sig))

      const awaitExit = Deferred.await(exited)
      const stop = (sig: NodeJS.Signals = options.stop.signal, grace: Duration.DurationInput = options.stop.grace) =>
        Effect.gen(function*() {
          if (!(yield* Deferred.isDone(exited))) {
            yield* signal(sig, options.stop.target)
            // A paused process (SIGSTOP in a chaos test) only sees the signal once resumed.
            yield* signal("SIGCONT", options.stop.target)
            // Finalizers run uninterruptibly; the wait must be interruptible or the timeout could never fire.
            const graceful = yield* Effect.interruptible(awaitExit).pipe(Effect.timeout(grace), Effect.option)
            if (graceful._tag === "None") {
              // Its last lines tell what it was still waiting for (a finalizer that did not end).
              yield* Effect.logWarning(
                `${options.label ?? options.command} (pid ${pid}) ignored ${sig}; sending SIGKILL; ` +
                  `its last log lines:\n${formatTail(tail)}`
              )
            }
          }
          // Also reaps stragglers the leader left behind in its group.
          yield* signal("SIGKILL", "group")
          return yield* awaitExit
        }).pipe(Effect.uninterruptible)

      const handle: OwnedProcess = {
        pid,
        exited: awaitExit,
        hasExited: Deferred.isDone(exited),
        // After an exit, give the pipes a moment to deliver the last lines (often the actual error).
        recentLines: Effect.whenEffect(
          Deferred.await(drained).pipe(Effect.timeout("500 millis"), Effect.ignore),
          Deferred.isDone(exited)
        ).pipe(Effect.zipRight(Effect.sync(() => [...tail]))),
        signal,
        stop
      }
      return handle
    }),
    (handle) => handle.stop()
  )

/**
 * Runs `acquire` in a child scope of the current one and closes that child scope right away if `acquire` fails or
 * is interrupted, so a half-started process does not linger until the caller's scope ends (matters for retries).
 */
export const releaseOnFailure = <A, E, R>(acquire: Effect.Effect<A, E, R>): Effect.Effect<A, E, R | Scope.Scope> =>
  Effect.gen(function*() {
    const parent = yield* Effect.scope
    const child = yield* Scope.fork(parent, ExecutionStrategy.sequential)
    return yield* acquire.pipe(
      Scope.extend(child),
      Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(child, exit) : Effect.void))
    )
  })

export interface CommandResult {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs a short command to completion, capturing its output. Interrupted, it kills the command and everything it
 * started (its own process group) and returns once they are gone: initdb, interrupted because another service
 * failed to start, left its `postgres` child writing into the data directory, and removing the directory then failed
 * with ENOTEMPTY, in place of the error that had stopped the start.
 */
export const runCommand = (options: {
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly cwd?: string | undefined
  readonly env?: NodeJS.ProcessEnv | undefined
  readonly runAs?: RunAs | undefined
}): Effect.Effect<CommandResult, SpawnError> =>
  Effect.async<CommandResult, SpawnError>((resume) => {
    const child = spawn(options.command, [...options.args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group, so that process.kill(-pid) reaches what it starts.
      detached: true,
      ...(options.runAs ? { uid: options.runAs.uid, gid: options.runAs.gid } : {})
    })
    let stdout = ""
    let stderr = ""
    // Once the command and whatever holds its output are gone.
    const closed = new Promise<void>((resolve) => {
      child.once("close", () => resolve())
      child.once("error", () => resolve())
    })
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    child.once("error", (cause) => resume(Effect.fail(new SpawnError({ command: options.command, cause }))))
    child.once(
      "close",
      (code, signal) => resume(Effect.succeed({ exitCode: exitCodeOf(code, signal), stdout, stderr }))
    )
    return Effect.promise(() => {
      if (child.pid !== undefined) signalQuietly(-child.pid, "SIGKILL")
      return closed
    })
  })
