/**
 * The renewal of one held shard lease: a compare-and-set every LEASE_TTL/6 until the lease is lost or fenced. Runs
 * on the lease keeper's thread (LeaseKeeper.ts), away from the node's event loop, or in process for tests.
 */
import { Data, Duration, Effect, Option } from "effect"
import { monotonicMillis } from "../ClusterConfig.js"
import type { Bucket, KvRecord } from "../Nats.js"
import { decodeLease, encodeLease, leaseKey, LeaseValue } from "./leaseRecord.js"

export const FENCED = "fenced: no successful renewal within 0.6 × LEASE_TTL"
/** Groups of leases renewed together, spread evenly over a renewal period (a lease's group: its shard modulo this). */
export const RENEWAL_SLOTS = 8
/** How much later than due a timer may fire before we say the thread was stalled rather than merely busy. */
const STALL_SLACK_MS = 500

export class LeaseLost extends Data.TaggedError("LeaseLost")<{ readonly shard: number; readonly why: string }> {}

export interface RenewalTimings {
  readonly leaseTtl: number
  /** How often a held lease is renewed. */
  readonly renewEvery: number
  /** A lease not renewed for this long stops its shard's work. */
  readonly fenceAfter: number
  /** The latest a late renewal may still be tried after the last one (before others may count the lease stale). */
  readonly lateLimit: number
}

export const renewalTimings = (leaseTtl: number, nodeTtl: number): RenewalTimings => ({
  leaseTtl,
  // DESIGN says LEASE_TTL/3; every LEASE_TTL/6 leaves four chances instead of one to renew before the fence
  // deadline, for twice the KV writes.
  renewEvery: leaseTtl / 6,
  fenceAfter: 0.6 * leaseTtl,
  lateLimit: Math.min(leaseTtl, nodeTtl) - 250
})

export interface RenewalHooks {
  /** After every successful renewal, with when it counts as renewed (monotonic, this thread's clock). */
  readonly renewed: (at: number) => Effect.Effect<void>
  /** Whether renewing may go on: false while the thread whose work the lease protects does not answer. */
  readonly mayRenew: () => boolean
  /** A renewal woke `stalledMs` past its due time (every held lease wakes late from one stall). */
  readonly late: (stalledMs: number) => Effect.Effect<void>
}

/**
 * Renews until the lease is lost or fenced; never returns normally. `acquiredAt` and every time here are
 * monotonic milliseconds of this thread's Effect clock.
 */
export const renewLease = (
  bucket: Bucket,
  self: string,
  timings: RenewalTimings,
  lease: { readonly shard: number; readonly epoch: number; readonly revision: number; readonly acquiredAt: number },
  hooks: RenewalHooks
): Effect.Effect<never, LeaseLost> =>
  Effect.gen(function*() {
    const { fenceAfter, lateLimit, renewEvery } = timings
    const { epoch, shard } = lease
    let revision = lease.revision
    let renewedAt = lease.acquiredAt
    // Renewals fall on a grid of renewEvery (never later than renewEvery after the last one), shifted by the lease's
    // slot: the thread wakes RENEWAL_SLOTS times a period, and the leases of a slot write together, where each lease
    // woke on its own and wrote alone (a wake-up and a socket write per lease on both sides). One slot for all would
    // wake least, but then every lease of a node is a burst of KV writes at the same instant, which nats-server
    // serves before the requests behind them: at 2,000 sends/s, the requests of the 100 ms after each such burst
    // took 23–26 ms on average against 7–9 ms elsewhere in the second (bench:send).
    const phase = ((shard % RENEWAL_SLOTS) * renewEvery) / RENEWAL_SLOTS
    const onGrid = (at: number) => Math.floor((at - phase) / renewEvery) * renewEvery + phase
    let nextAttemptAt = onGrid(lease.acquiredAt + renewEvery)
    /** An attempt failed since the last renewal: a node that could not renew must not try past its fence. */
    let failedSinceRenewal = false
    /** When the first attempt whose outcome is unknown (it timed out) since the last renewal was sent. */
    let unconfirmedSince: number | undefined
    const value = encodeLease(new LeaseValue({ nodeId: self, epoch }))
    /** The record is this very lease of ours (this node, this epoch), at whatever revision. */
    const isOurs = (record: KvRecord) =>
      record.operation === "PUT" &&
      Option.exists(decodeLease(record.value), (held) => held.nodeId === self && held.epoch === epoch)
    const renewed = (at: number) => {
      renewedAt = at
      return hooks.renewed(at)
    }
    while (true) {
      yield* Effect.sleep(Duration.millis(Math.max(0, nextAttemptAt - (yield* monotonicMillis))))
      const attemptAt = yield* monotonicMillis
      const deadline = renewedAt + fenceAfter
      // The work this lease protects does not answer (its thread hung): no more renewals, so that the shard goes to
      // another node LEASE_TTL later, and fenced at the usual deadline.
      if (!hooks.mayRenew()) {
        if (attemptAt >= deadline) {
          return yield* new LeaseLost({ shard, why: "fenced: the node's event loop stopped answering" })
        }
        nextAttemptAt = attemptAt + 100
        continue
      }
      // Woken past the deadline without having tried since: this thread was stalled (a long GC, the whole process
      // stopped). One quick compare-and-set settles it: it succeeds only if no other node took the lease meanwhile
      // (any acquire changes the revision), so the shard is still ours alone. A renewal that failed before the
      // deadline, or a stall past LEASE_TTL or NODE_TTL (after which the others may have counted this node gone and
      // taken its shards), fences as before.
      const late = attemptAt >= deadline
      if (late && (failedSinceRenewal || attemptAt >= renewedAt + lateLimit)) {
        // An attempt whose answer the stall left unread may have landed: then the lease was renewed no earlier
        // than that attempt was sent, which may still be recent enough. One quick read tells.
        if (!failedSinceRenewal && unconfirmedSince !== undefined && attemptAt < unconfirmedSince + lateLimit) {
          const since = unconfirmedSince
          unconfirmedSince = undefined
          const landed = yield* bucket.get(leaseKey(shard)).pipe(
            Effect.timeout(Duration.millis(250)),
            Effect.option,
            Effect.map((record) => Option.filter(Option.flatten(record), (r) => r.revision > revision && isOurs(r)))
          )
          if (Option.isSome(landed)) {
            revision = landed.value.revision
            yield* renewed(since)
            nextAttemptAt = yield* monotonicMillis
            continue
          }
        }
        return yield* new LeaseLost({ shard, why: FENCED })
      }
      // Each attempt is short: one sent to a NATS server that just died would otherwise wait out the whole
      // deadline instead of being retried over the client's new connection.
      const limit = late ? 250 : Math.min(deadline - attemptAt, Math.max(renewEvery, 250))
      const result = yield* bucket.update(leaseKey(shard), value, revision).pipe(
        Effect.timeout(Duration.millis(limit)),
        Effect.either
      )
      // A late attempt gets no retry; a revision mismatch is still read below (an unanswered attempt that landed).
      if (late && result._tag === "Left" && result.left._tag !== "RevisionMismatch") {
        return yield* new LeaseLost({ shard, why: FENCED })
      }
      if (late) yield* hooks.late(attemptAt - nextAttemptAt)
      if (result._tag === "Right") {
        revision = result.right
        yield* renewed(attemptAt)
        unconfirmedSince = undefined
        nextAttemptAt = onGrid(attemptAt + renewEvery)
        failedSinceRenewal = false
      } else if (result.left._tag === "RevisionMismatch") {
        // An earlier attempt that timed out here may have landed after all: then the lease is still ours, at a
        // revision we did not see. Anything else is another node's.
        const current = yield* bucket.get(leaseKey(shard)).pipe(
          Effect.timeout(Duration.millis(late ? 250 : Math.max(renewEvery, 250))),
          Effect.option,
          Effect.map(Option.flatten)
        )
        const ours = Option.filter(current, isOurs)
        if (Option.isNone(ours)) return yield* new LeaseLost({ shard, why: "lease taken by another node" })
        revision = ours.value.revision
        // It landed no earlier than the first unanswered attempt was sent: a renewal as of then.
        if (unconfirmedSince !== undefined) {
          yield* renewed(Math.max(renewedAt, unconfirmedSince))
          unconfirmedSince = undefined
          failedSinceRenewal = false
        }
        nextAttemptAt = yield* monotonicMillis
      } else {
        // A timeout that fired long after it was due says this thread was stalled while the request was out
        // (after a stall, Node runs due timers before it reads the sockets, so the answer may be waiting
        // unread): that is no evidence against NATS, and the attempt after it is a late one, as above.
        const tookMs = (yield* monotonicMillis) - attemptAt
        const timedOut = result.left._tag === "TimeoutException"
        const stalledMeanwhile = timedOut && tookMs > limit + STALL_SLACK_MS
        if (timedOut) unconfirmedSince ??= attemptAt
        if (!stalledMeanwhile) {
          failedSinceRenewal = true
          yield* Effect.logWarning("lease renewal failed, retrying").pipe(
            Effect.annotateLogs({ shard, error: String(result.left) })
          )
        }
        // Retry soon rather than after a full period: the fence deadline is close.
        nextAttemptAt = (yield* monotonicMillis) + 100
      }
    }
  })

/**
 * Gives a lease up after its work stopped: deletes it at the revision this node last wrote, read back first (a
 * renewal that timed out, or was still out when the renewals stopped, may land after it). Nothing when another node
 * holds it now.
 */
export const releaseLease = (bucket: Bucket, self: string, shard: number): Effect.Effect<void> =>
  bucket.get(leaseKey(shard)).pipe(
    Effect.flatMap((record) => {
      const ours = Option.filter(
        record,
        (r) => r.operation === "PUT" && Option.exists(decodeLease(r.value), (held) => held.nodeId === self)
      )
      return Option.isSome(ours) ? bucket.delete(leaseKey(shard), ours.value.revision) : Effect.void
    }),
    // A renewal that landed between the read and the delete: read again.
    Effect.retry({ times: 3, while: (error) => error._tag === "RevisionMismatch" }),
    Effect.ignore
  )
