import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option, Stream, TestClock } from "effect"
import { monotonicMillis } from "../src/ClusterConfig.js"
import { RENEWAL_SLOTS, renewalTimings, renewLease } from "../src/internal/leaseRenewal.js"
import type { Bucket } from "../src/Nats.js"

/**
 * When renewals go out, on the test clock: the compare-and-sets land in a bucket of this process that answers at
 * once (what NATS answers is ShardLeases.test.ts's subject, on a real nats-server).
 */
const recordingBucket = (renewals: Array<{ shard: number; at: number }>): Bucket => {
  const revisions = new Map<string, number>()
  const unused = () => Effect.dieMessage("not used by renewals")
  return {
    name: "shards",
    get: () => Effect.succeed(Option.none()),
    create: unused,
    update: (key, _value, revision) =>
      Effect.gen(function*() {
        const at = yield* monotonicMillis
        renewals.push({ shard: Number(key.split(".").pop()), at })
        const next = Math.max(revision, revisions.get(key) ?? 0) + 1
        revisions.set(key, next)
        return next
      }),
    put: unused,
    delete: unused,
    remove: unused,
    watch: Stream.dieMessage("not used by renewals")
  }
}

describe("lease renewal", () => {
  it.effect("renews each lease every period in its shard's slot: RENEWAL_SLOTS groups spread over the period", () =>
    Effect.gen(function*() {
      const timings = renewalTimings(4_800, 4_000)
      const period = timings.renewEvery
      const renewals: Array<{ shard: number; at: number }> = []
      const bucket = recordingBucket(renewals)
      const hooks = { renewed: () => Effect.void, mayRenew: () => true, late: () => Effect.void }
      const acquired = new Map<number, number>()
      const fibers: Array<Fiber.RuntimeFiber<never, unknown>> = []
      // 32 leases taken at scattered moments, as a node takes its shards.
      for (let shard = 0; shard < 32; shard++) {
        yield* TestClock.adjust(`${(shard * 37) % 23} millis`)
        const acquiredAt = yield* monotonicMillis
        acquired.set(shard, acquiredAt)
        fibers.push(
          yield* Effect.fork(
            renewLease(bucket, "node-a", timings, { shard, epoch: 1, revision: 1, acquiredAt }, hooks)
          )
        )
      }
      // Every renewal falls on a multiple of period / RENEWAL_SLOTS (100 ms here): steps of 10 ms from a multiple of
      // 10 wake each sleeper at its own deadline (the test clock shows a woken fiber the time it was moved to).
      yield* TestClock.adjust(`${(10 - ((yield* monotonicMillis) % 10)) % 10} millis`)
      for (let step = 0; step < (4 * period) / 10; step++) yield* TestClock.adjust("10 millis")
      yield* Effect.forEach(fibers, Fiber.interrupt, { discard: true })

      const slotPhase = (shard: number) => ((shard % RENEWAL_SLOTS) * period) / RENEWAL_SLOTS
      for (let shard = 0; shard < 32; shard++) {
        const times = renewals.filter((r) => r.shard === shard).map((r) => r.at)
        expect(times.length).toBeGreaterThanOrEqual(3)
        // Never later than a period after the acquiring write or the renewal before.
        const gaps = times.map((at, i) =>
          at - (i === 0 ? acquired.get(shard) ?? Number.NaN : times[i - 1] ?? Number.NaN)
        )
        expect(gaps[0]).toBeLessThanOrEqual(period)
        expect(gaps.slice(1)).toEqual(gaps.slice(1).map(() => period))
        // Always in the shard's slot.
        expect(times.map((at) => at % period)).toEqual(times.map(() => slotPhase(shard)))
      }
      // The whole node wakes RENEWAL_SLOTS times a period, not once per lease, nor once for all of them.
      const last = Math.max(...renewals.map((r) => r.at))
      const lastPeriod = renewals.filter((r) => r.at > last - period)
      expect(new Set(lastPeriod.map((r) => r.at)).size).toBe(RENEWAL_SLOTS)
      expect(lastPeriod).toHaveLength(32)
    }))
})
