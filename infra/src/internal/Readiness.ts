/**
 * Waiting for a freshly spawned process to become usable: poll a probe, but give up as soon as the process dies
 * (no point waiting 30 s for a server that exited on its first line) or when the deadline passes.
 */
import { Data, Duration, Effect, Schedule } from "effect"
import type { OwnedProcess } from "./ChildProcess.js"

export class ProcessExited extends Data.TaggedError("ProcessExited")<{ readonly exitCode: number }> {}
export class ReadinessTimeout extends Data.TaggedError("ReadinessTimeout")<{ readonly after: Duration.Duration }> {}

export const awaitReady = (
  owned: OwnedProcess,
  probe: Effect.Effect<boolean>,
  options: { readonly timeout: Duration.DurationInput; readonly interval?: Duration.DurationInput }
): Effect.Effect<void, ProcessExited | ReadinessTimeout> =>
  Effect.raceFirst(
    probe.pipe(
      Effect.repeat({ schedule: Schedule.spaced(options.interval ?? "100 millis"), until: (ready) => ready }),
      Effect.asVoid
    ),
    Effect.flatMap(owned.exited, (exitCode) => new ProcessExited({ exitCode }))
  ).pipe(
    Effect.timeoutFail({
      duration: options.timeout,
      onTimeout: () => new ReadinessTimeout({ after: Duration.decode(options.timeout) })
    })
  )

/** True when `url` answers 200; any error (refused, timeout, other status) just means "not yet". */
export const httpOk = (url: string, timeout: Duration.DurationInput = "1 second"): Effect.Effect<boolean> =>
  Effect.tryPromise({
    try: (signal) =>
      fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(Duration.toMillis(timeout))]) }).then(
        async (response) => {
          await response.body?.cancel()
          return response.status === 200
        }
      ),
    catch: () => false
  }).pipe(Effect.orElseSucceed(() => false))

/** The last `count` lines, indented, for error messages. */
export const formatTail = (lines: ReadonlyArray<string>, count = 40): string =>
  lines.length === 0 ? "  (no output)" : lines.slice(-count).map((line) => `  ${line}`).join("\n")
