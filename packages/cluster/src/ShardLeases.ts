/**
 * Shard leases in the KV bucket `wa_shards` (key `shard.<n>`, value `{nodeId, epoch}`), decided only by
 * compare-and-set results. Each owned shard runs in its own fiber: acquire → start the shard's work →
 * renew by CAS every LEASE_TTL/3 → on handover stop the work, then release the lease.
 * A shard whose renewal has not succeeded within 0.6 × LEASE_TTL stops its work (self-fencing) before
 * another node may take it over (LEASE_TTL after the last change it saw).
 */
import { Context, Data, Duration, Effect, Exit, FiberMap, Layer, Option, Ref, Schedule, Schema, Scope } from "effect"
import { ownerOf } from "./Assignment.js"
import { ClusterConfig, monotonicMillis } from "./ClusterConfig.js"
import { Membership } from "./Membership.js"
import { type Bucket, Nats } from "./Nats.js"
import type { NatsError, RevisionMismatch } from "./NatsError.js"

export const SHARDS_BUCKET = "wa_shards"
export const leaseKey = (shard: number): string => `shard.${shard}`

export class LeaseValue extends Schema.Class<LeaseValue>("LeaseValue")({
  nodeId: Schema.String,
  /** The revision at which the lease was acquired; null only in the acquiring write itself. */
  epoch: Schema.NullOr(Schema.Number)
}) {}
const LeaseJson = Schema.parseJson(LeaseValue)
const encodeLease = (value: LeaseValue) => new TextEncoder().encode(Schema.encodeSync(LeaseJson)(value))
const decodeLease = (bytes: Uint8Array) => Schema.decodeUnknownOption(LeaseJson)(new TextDecoder().decode(bytes))

/**
 * What a node does with a shard while it holds the lease. `run` acquires the shard's resources in the
 * given scope (actors, subscriptions); closing the scope must stop them all.
 */
export class ShardLifecycle extends Context.Tag("@wacluster/cluster/ShardLifecycle")<ShardLifecycle, {
  readonly run: (shard: number, epoch: number) => Effect.Effect<void, never, Scope.Scope>
}>() {}

class LeaseLost extends Data.TaggedError("LeaseLost")<{ readonly shard: number; readonly why: string }> {}

export interface HeldShard {
  readonly shard: number
  readonly epoch: number
}

export class ShardLeases extends Context.Tag("@wacluster/cluster/ShardLeases")<ShardLeases, {
  /** Shards this node holds right now, with their epochs. */
  readonly held: Effect.Effect<ReadonlyArray<HeldShard>>
  /** Runs one reconciliation pass now (also done every HEARTBEAT in the background). */
  readonly reconcile: Effect.Effect<void>
}>() {
  static readonly make = Effect.gen(function*() {
    const config = yield* ClusterConfig
    const membership = yield* Membership
    const lifecycle = yield* ShardLifecycle
    const nats = yield* Nats
    const bucket: Bucket = yield* nats.bucket(SHARDS_BUCKET, { history: 1, replicas: config.replicas })
    const self = membership.self
    const leaseTtl = Duration.toMillis(config.leaseTtl)
    const renewEvery = leaseTtl / 3
    const fenceAfter = 0.6 * leaseTtl

    const held = new Map<number, HeldShard>()
    /** Per shard not held here: the last revision seen and since when (monotonic), for takeover. */
    const sightings = new Map<number, { readonly revision: number; readonly since: number }>()
    const fibers = yield* FiberMap.make<number>()

    /** Renews until the lease is lost or fenced; never returns normally. */
    const renewLoop = (shard: number, epoch: number, acquiredRevision: number, acquiredAt: number) =>
      Effect.gen(function*() {
        let revision = acquiredRevision
        let renewedAt = acquiredAt
        let nextAttemptAt = acquiredAt + renewEvery
        const value = encodeLease(new LeaseValue({ nodeId: self, epoch }))
        while (true) {
          yield* Effect.sleep(Duration.millis(Math.max(0, nextAttemptAt - (yield* monotonicMillis))))
          const attemptAt = yield* monotonicMillis
          const deadline = renewedAt + fenceAfter
          if (attemptAt >= deadline) {
            return yield* new LeaseLost({ shard, why: "fenced: no successful renewal within 0.6 × LEASE_TTL" })
          }
          const result = yield* bucket.update(leaseKey(shard), value, revision).pipe(
            Effect.timeout(Duration.millis(deadline - attemptAt)),
            Effect.either
          )
          if (result._tag === "Right") {
            revision = result.right
            renewedAt = attemptAt
            nextAttemptAt = attemptAt + renewEvery
          } else if (result.left._tag === "RevisionMismatch") {
            return yield* new LeaseLost({ shard, why: "lease taken by another node" })
          } else {
            yield* Effect.logWarning("lease renewal failed, retrying").pipe(
              Effect.annotateLogs({ shard, error: String(result.left) })
            )
            // Retry soon rather than after a full period: the fence deadline is close.
            nextAttemptAt = (yield* monotonicMillis) + 100
          }
        }
      })

    /** The life of one owned shard, from a successful acquire to its release. */
    const holdShard = (shard: number, epoch: number, revision: number, acquiredAt: number) =>
      Effect.gen(function*() {
        const release = yield* Ref.make(true)
        const workScope = yield* Scope.make()
        held.set(shard, { shard, epoch })
        yield* Effect.addFinalizer(() =>
          Effect.gen(function*() {
            held.delete(shard)
            // Stop the shard's work before the lease is given up: never two owners at once.
            yield* Scope.close(workScope, Exit.void)
            if (yield* Ref.get(release)) {
              yield* bucket.delete(leaseKey(shard), yield* currentRevision(shard)).pipe(Effect.ignore)
            }
            yield* Effect.logDebug("shard released").pipe(Effect.annotateLogs({ shard, epoch }))
          })
        )
        yield* Effect.logDebug("shard acquired").pipe(Effect.annotateLogs({ shard, epoch }))
        yield* lifecycle.run(shard, epoch).pipe(Scope.extend(workScope))
        yield* renewLoop(shard, epoch, revision, acquiredAt).pipe(
          Effect.tapError((lost) =>
            Effect.zipRight(
              Ref.set(release, false),
              Effect.logWarning("shard lost").pipe(Effect.annotateLogs({ shard, why: lost.why }))
            )
          )
        )
      }).pipe(Effect.scoped, Effect.ignore)

    /**
     * The revision this node last wrote for a held shard, read back before a release: a renewal that timed out
     * here may still have landed in NATS, so the renew loop's own revision can be stale. Releases are rare.
     */
    const currentRevision = (shard: number) =>
      bucket.get(leaseKey(shard)).pipe(
        Effect.map((record) =>
          Option.match(record, {
            onNone: () => 0,
            onSome: (r) =>
              Option.match(decodeLease(r.value), {
                onNone: () => 0,
                onSome: (v) => v.nodeId === self ? r.revision : 0
              })
          })
        ),
        Effect.orElseSucceed(() => 0)
      )

    /** Tries to take a shard this node should own; succeeds only through a CAS write. */
    const tryAcquire = (shard: number, live: ReadonlySet<string>) =>
      Effect.gen(function*() {
        const key = leaseKey(shard)
        const now = yield* monotonicMillis
        const record = yield* bucket.get(key)
        const fresh = encodeLease(new LeaseValue({ nodeId: self, epoch: null }))
        let attempt: Effect.Effect<number, NatsError | RevisionMismatch> | undefined
        if (Option.isNone(record) || record.value.operation !== "PUT") {
          attempt = bucket.create(key, fresh)
        } else {
          const { revision, value } = record.value
          const holder = Option.map(decodeLease(value), (v) => v.nodeId)
          const seen = sightings.get(shard)
          if (seen === undefined || seen.revision !== revision) sightings.set(shard, { revision, since: now })
          const unchangedFor = seen !== undefined && seen.revision === revision ? now - seen.since : 0
          const holderGone = Option.match(holder, { onNone: () => true, onSome: (id) => !live.has(id) })
          // Our own leftover lease (e.g. after self-fencing) is as good as free.
          const ours = Option.contains(holder, self)
          if (ours || holderGone || unchangedFor >= leaseTtl) attempt = bucket.update(key, fresh, revision)
        }
        if (attempt === undefined) return
        const revision = yield* attempt
        sightings.delete(shard)
        yield* FiberMap.run(fibers, shard, holdShard(shard, revision, revision, now))
      }).pipe(
        Effect.catchAll((error) =>
          error._tag === "RevisionMismatch"
            ? Effect.void
            : Effect.logDebug("acquire failed").pipe(Effect.annotateLogs({ shard, error: String(error) }))
        )
      )

    let lastView = ""
    let lastHeld = -1
    const reconcile = Effect.gen(function*() {
      const candidates = yield* membership.candidates
      const live = new Set((yield* membership.live).map((n) => n.entry.nodeId as string))
      if (!candidates.includes(self)) return
      const view = candidates.join(",")
      if (view !== lastView) {
        yield* Effect.logInfo("members changed").pipe(Effect.annotateLogs({ self, candidates: view }))
        lastView = view
      }
      const toAcquire: Array<number> = []
      for (let shard = 0; shard < config.shards; shard++) {
        const desired = ownerOf(shard, candidates)
        const running = yield* FiberMap.has(fibers, shard)
        if (running && desired !== undefined && desired !== self) {
          yield* FiberMap.remove(fibers, shard)
        } else if (!running && desired === self) {
          toAcquire.push(shard)
        }
      }
      yield* Effect.forEach(toAcquire, (shard) => tryAcquire(shard, live), { concurrency: 16, discard: true })
      if (held.size !== lastHeld) {
        lastHeld = held.size
        yield* Effect.logInfo(`holding ${held.size} of ${config.shards} shards`)
      }
    }).pipe(Effect.withSpan("ShardLeases.reconcile"))

    // Let nodes that start together see each other before anyone takes shards.
    yield* Effect.sleep(Duration.times(config.heartbeat, 2)).pipe(
      Effect.zipRight(reconcile.pipe(Effect.repeat(Schedule.spaced(config.heartbeat)))),
      Effect.forkScoped
    )

    return {
      held: Effect.sync(() => Array.from(held.values()).sort((a, b) => a.shard - b.shard)),
      reconcile
    }
  })

  static readonly layer = Layer.scoped(ShardLeases, ShardLeases.make)
}
