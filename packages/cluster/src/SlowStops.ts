/**
 * What a stopping node is waiting for. A graceful stop runs many finalizers (sessions stopped, shard leases given
 * up, connections drained); when one of them hangs, the node is killed at the end of its grace period and nothing
 * says why. Finalizers wrapped in `track` are noted while they run; every `reportAfter` a warning names those that
 * have run for that long or longer, how many of each kind and for how long. Without the layer `track` runs the
 * finalizer as it is (library tests).
 */
import { Context, Duration, Effect, Layer, Option, Schedule } from "effect"
import { monotonicMillis } from "./ClusterConfig.js"

interface Running {
  readonly what: string
  readonly since: number
}

export class SlowStops extends Context.Tag("@wacluster/cluster/SlowStops")<SlowStops, {
  /** Notes that `what` started to stop; the returned effect notes that it has ended. */
  readonly begin: (what: string) => Effect.Effect<Effect.Effect<void>>
}>() {
  static readonly make = Effect.fn("SlowStops.make")(function*(reportAfter: Duration.DurationInput) {
    const after = Duration.toMillis(reportAfter)
    const running = new Set<Running>()

    /** One line for all that is slow: stops of the same kind (one per shard) counted together, with the oldest. */
    const report = Effect.gen(function*() {
      const now = yield* monotonicMillis
      const slow = new Map<string, { count: number; oldest: number }>()
      for (const entry of running) {
        if (now - entry.since < after) continue
        const seen = slow.get(entry.what)
        slow.set(entry.what, {
          count: (seen?.count ?? 0) + 1,
          oldest: Math.min(seen?.oldest ?? entry.since, entry.since)
        })
      }
      if (slow.size === 0) return
      const waitingFor = Array.from(
        slow,
        ([what, { count, oldest }]) =>
          `${what}${count > 1 ? ` ×${count}` : ""} (${((now - oldest) / 1000).toFixed(1)} s)`
      )
      yield* Effect.logWarning("slow to stop").pipe(Effect.annotateLogs({ waitingFor: waitingFor.join("; ") }))
    })
    // Forked here, interruptible: a fiber forked from a finalizer would be uninterruptible, and this layer's scope
    // could never stop it.
    yield* report.pipe(Effect.repeat(Schedule.spaced(reportAfter)), Effect.interruptible, Effect.forkScoped)

    const begin = (what: string) =>
      Effect.map(monotonicMillis, (since) => {
        const entry: Running = { what, since }
        running.add(entry)
        return Effect.sync(() => running.delete(entry)).pipe(Effect.asVoid)
      })

    return { begin }
  })

  /** Reports every `reportAfter` (2 s by default) the stops that have run longer than that. */
  static readonly layer = (reportAfter: Duration.DurationInput = Duration.seconds(2)) =>
    Layer.scoped(SlowStops, SlowStops.make(reportAfter))
}

/** Runs `self` (a finalizer) as a stop of `what`: named in the warnings while it runs for too long. */
export const track = (what: string) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(
    Effect.serviceOption(SlowStops),
    Option.match({
      onNone: () => self,
      onSome: (slowStops) => Effect.acquireUseRelease(slowStops.begin(what), () => self, (end) => end)
    })
  )
