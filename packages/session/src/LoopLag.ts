/**
 * How late this process's event loop runs, and a wait for headroom before new WhatsApp connects.
 *
 * A node logging in or linking many sessions at once can take more CPU than the machine has; its event loop then
 * runs seconds late, and with it the lease renewals that keep its shards (a node linking its 4,600th device on a
 * saturated two-core machine fenced every shard after stalls of 1–2 s). New connects are what a node can defer:
 * while the loop runs more than `limitMs` late, a connect waits (at most `maxWait`, so an overloaded node still makes
 * progress) once it has its turn at the connect gate (ConnectGate): only the few holding a turn wait, not every
 * session in the queue.
 *
 * The lateness is sampled by a plain timer every `SAMPLE_MS`: how much later than due each tick ran, the highest
 * recent value kept and halved at every tick that ran on time.
 */
import { Duration, Effect, type Scope } from "effect"

const SAMPLE_MS = 100

export interface LoopLag {
  /** How late the event loop runs now, in milliseconds. */
  readonly current: Effect.Effect<number>
  /** Returns at once while the loop keeps up; otherwise when it does again, or after `maxWait`. */
  readonly headroom: Effect.Effect<void>
}

export const make = (options: {
  readonly limitMs: number
  readonly maxWait: Duration.DurationInput
}): Effect.Effect<LoopLag, never, Scope.Scope> =>
  Effect.gen(function*() {
    let lag = 0
    let last = performance.now()
    yield* Effect.acquireRelease(
      Effect.sync(() =>
        setInterval(() => {
          const now = performance.now()
          const late = Math.max(0, now - last - SAMPLE_MS)
          last = now
          lag = Math.max(late, lag / 2)
        }, SAMPLE_MS).unref()
      ),
      (timer) => Effect.sync(() => clearInterval(timer))
    )
    const maxWaitMs = Duration.toMillis(Duration.decode(options.maxWait))
    const headroom = Effect.suspend(() => {
      if (lag <= options.limitMs) return Effect.void
      const until = performance.now() + maxWaitMs
      return Effect.sleep(Duration.millis(SAMPLE_MS / 2)).pipe(
        Effect.repeat({ while: () => lag > options.limitMs && performance.now() < until })
      )
    })
    return { current: Effect.sync(() => lag), headroom }
  })
