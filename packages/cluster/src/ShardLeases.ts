/**
 * Shard leases in the KV bucket `wa_shards` (key `shard.<n>`, value `{nodeId, epoch}`), decided only by
 * compare-and-set results. Each owned shard runs in its own fiber: acquire → start the shard's work →
 * renewed by CAS every LEASE_TTL/6 (by the LeaseKeeper, on a thread of its own) → on handover stop the work, then
 * release the lease. A shard whose renewal has not succeeded within 0.6 × LEASE_TTL stops its work (self-fencing)
 * before another node may take it over (LEASE_TTL after the last change it saw).
 */
import { Context, Duration, Effect, Exit, FiberMap, Layer, Option, Ref, Scope } from "effect"
import { ownerOf } from "./Assignment.js"
import { ClusterConfig, monotonicMillis } from "./ClusterConfig.js"
import { decodeLease, encodeLease, leaseKey, LeaseValue, SHARDS_BUCKET } from "./internal/leaseRecord.js"
import { renewalTimings } from "./internal/leaseRenewal.js"
import { LeaseKeeper } from "./LeaseKeeper.js"
import { Membership, silenceReference } from "./Membership.js"
import { type Bucket, Nats } from "./Nats.js"
import type { NatsError, RevisionMismatch } from "./NatsError.js"
import * as SlowStops from "./SlowStops.js"

export { leaseKey, LeaseValue, SHARDS_BUCKET } from "./internal/leaseRecord.js"
/**
 * Epochs are `base + KV revision`. Revisions start again at 1 when the bucket is new (NATS lost its storage, or the
 * cluster moved to another NATS), while Postgres still holds the old fences: the first node to find the bucket
 * without a base writes one above every fence in Postgres (EpochFloor), so new epochs keep rising.
 */
export const EPOCH_BASE_KEY = "epoch-base"

/** The highest fencing epoch any shard ever had (in Postgres, on nodes); 0 where nothing is fenced. */
export class EpochFloor extends Context.Tag("@wacluster/cluster/EpochFloor")<EpochFloor, {
  readonly highest: Effect.Effect<number, unknown>
}>() {
  static readonly none = Layer.succeed(EpochFloor, { highest: Effect.succeed(0) })
}

/** The bucket's epoch base (see EPOCH_BASE_KEY), written from `floor` when the bucket has none yet. */
export const epochBase = (bucket: Bucket, floor: Effect.Effect<number, unknown>) =>
  Effect.gen(function*() {
    const existing = yield* bucket.get(EPOCH_BASE_KEY)
    if (Option.isSome(existing) && existing.value.operation === "PUT") {
      return Number(new TextDecoder().decode(existing.value.value))
    }
    const highest = yield* floor
    return yield* bucket.create(EPOCH_BASE_KEY, new TextEncoder().encode(String(highest))).pipe(
      Effect.as(highest),
      // Another node wrote it first: theirs is the one.
      Effect.catchTag("RevisionMismatch", () =>
        bucket.get(EPOCH_BASE_KEY).pipe(
          Effect.flatMap((record) =>
            Option.isSome(record)
              ? Effect.succeed(Number(new TextDecoder().decode(record.value.value)))
              : Effect.fail("epoch base vanished")
          )
        ))
    )
  })

/** What the work of a shard may ask about its lease. */
export interface ShardLease {
  /**
   * Whether this node still holds the lease at the epoch the work started with, read from NATS now (not from
   * memory): false when another node took it, or when NATS cannot tell.
   */
  readonly stillHeld: Effect.Effect<boolean>
}

/**
 * What a node does with a shard while it holds the lease. `run` acquires the shard's resources in the
 * given scope (actors, subscriptions); closing the scope must stop them all.
 */
export class ShardLifecycle extends Context.Tag("@wacluster/cluster/ShardLifecycle")<ShardLifecycle, {
  readonly run: (shard: number, epoch: number, lease: ShardLease) => Effect.Effect<void, never, Scope.Scope>
}>() {}

export interface HeldShard {
  readonly shard: number
  readonly epoch: number
}

/**
 * How long the reconciler waits before its next pass: a heartbeat, or less when another node's silence reaches
 * NODE_TTL sooner, so a dead node's shards are taken the moment it counts as gone rather than up to a heartbeat
 * later. `live` as `Membership.live` reports it (`seenAt` on the same monotonic clock as `now`).
 */
export const nextPassIn = (
  now: number,
  live: ReadonlyArray<{ readonly entry: { readonly nodeId: string }; readonly seenAt: number }>,
  self: string,
  heartbeat: number,
  nodeTtl: number
): number => {
  let wait = heartbeat
  for (const node of live) {
    if (node.entry.nodeId === self) continue
    // Just past the moment it counts as gone (`now - seenAt >= NODE_TTL`).
    const goneIn = node.seenAt + nodeTtl - now + 10
    if (goneIn > 0 && goneIn < wait) wait = goneIn
  }
  return wait
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
    const floor = yield* EpochFloor
    const nats = yield* Nats
    const bucket: Bucket = yield* nats.bucket(SHARDS_BUCKET, { history: 1, replicas: config.replicas })
    const self = membership.self
    const keeper = yield* LeaseKeeper
    const leaseTtl = Duration.toMillis(config.leaseTtl)
    const heartbeat = Duration.toMillis(config.heartbeat)
    const nodeTtl = Duration.toMillis(config.nodeTtl)
    /** How long the lease of a node gone from membership must have stood still before it is taken. */
    const goneQuiet = 2 * renewalTimings(leaseTtl, nodeTtl).renewEvery

    const held = new Map<number, HeldShard>()
    /** When this node began to stop (monotonic), for the log line that says how long releasing its shards took. */
    let stoppingSince: number | undefined
    // Runs after every shard's own finalizer (it is added before the fiber map that holds them).
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() =>
        stoppingSince === undefined ?
          Effect.void :
          Effect.flatMap(monotonicMillis, (now) =>
            Effect.logInfo("released every shard").pipe(
              Effect.annotateLogs({ tookMs: Math.round(now - (stoppingSince ?? now)) })
            ))
      )
    )
    /** Per shard not held here: the last revision seen and since when (monotonic), for takeover. */
    const sightings = new Map<number, { readonly revision: number; readonly since: number }>()
    const fibers = yield* FiberMap.make<number>()
    /** Shards this node handed over whose new owner has not taken them yet, with when (monotonic). */
    const handingOver = new Map<number, number>()
    /** Read again at every reconciliation: a new bucket gets a new base before anyone acquires from it. */
    let base: number | undefined

    /** The life of one owned shard, from a successful acquire to its release. */
    const holdShard = (shard: number, epoch: number, revision: number, acquiredAt: number) =>
      Effect.gen(function*() {
        const kept = yield* keeper.keep({ nodeId: self, shard, epoch, revision, acquiredAt })
        const release = yield* Ref.make(true)
        const workScope = yield* Scope.make()
        held.set(shard, { shard, epoch })
        yield* Effect.addFinalizer(() =>
          Effect.gen(function*() {
            held.delete(shard)
            // Stop the shard's work before the lease is given up: never two owners at once.
            yield* Scope.close(workScope, Exit.void).pipe(SlowStops.track("a shard's sessions"))
            if (yield* Ref.get(release)) yield* kept.release.pipe(SlowStops.track("a shard's lease release"))
            yield* Effect.logDebug("shard released").pipe(Effect.annotateLogs({ shard, epoch }))
          })
        )
        yield* Effect.logDebug("shard acquired").pipe(Effect.annotateLogs({ shard, epoch }))
        // The work starts beside the renewals, not before them: starting a shard's sessions can take longer than
        // the fence deadline (Postgres slow or restarting, a busy node taking many shards at once).
        yield* lifecycle.run(shard, epoch, { stillHeld: stillHeld(shard, epoch, epoch - revision) }).pipe(
          Scope.extend(workScope),
          Effect.forkIn(workScope)
        )
        yield* kept.lost.pipe(
          Effect.tapError((lost) =>
            Effect.zipRight(
              Ref.set(release, false),
              Effect.logWarning("shard lost").pipe(Effect.annotateLogs({ shard, why: lost.why }))
            )
          )
        )
      }).pipe(Effect.scoped, Effect.ignore)

    const stillHeld = (shard: number, epoch: number, baseAtAcquire: number) =>
      bucket.get(leaseKey(shard)).pipe(
        Effect.map((record) =>
          Option.isSome(record) && record.value.operation === "PUT" &&
          Option.exists(
            decodeLease(record.value.value),
            // The acquiring write carries no epoch: its own revision is the epoch.
            (lease) => lease.nodeId === self && (lease.epoch ?? baseAtAcquire + record.value.revision) === epoch
          )
        ),
        Effect.orElseSucceed(() => false)
      )

    /**
     * Reads a shard's lease and notes since when its revision has stood still here (`sightings`); returns the
     * record and for how long it has been unchanged (0 when it just changed or was first seen).
     */
    const sight = (shard: number) =>
      Effect.gen(function*() {
        const record = yield* bucket.get(leaseKey(shard))
        // After the read: the record was current at some moment before this.
        const now = yield* monotonicMillis
        const live = Option.filter(record, (r) => r.operation === "PUT")
        if (Option.isNone(live)) {
          sightings.delete(shard)
          return { now, record: live, unchangedFor: 0 }
        }
        const seen = sightings.get(shard)
        const revision = live.value.revision
        if (seen === undefined || seen.revision !== revision) sightings.set(shard, { revision, since: now })
        const unchangedFor = seen !== undefined && seen.revision === revision ? now - seen.since : 0
        return { now, record: live, unchangedFor }
      })

    /**
     * Tries to take a shard this node should own; succeeds only through a CAS write. A lease is taken when it is
     * free or our own leftover, when it has not changed for LEASE_TTL (its holder fenced itself long ago), or
     * sooner when its holder is gone from membership and the lease has also missed its holder's last two renewals:
     * a node whose heartbeats do not come through may still be renewing its leases (the membership bucket without
     * a leader while the shards bucket has one, a watch that went quiet), and then its lease keeps changing.
     */
    const tryAcquire = (shard: number, live: ReadonlySet<string>) =>
      Effect.gen(function*() {
        const baseNow = base
        if (baseNow === undefined) return
        const key = leaseKey(shard)
        const { now, record, unchangedFor } = yield* sight(shard)
        const fresh = encodeLease(new LeaseValue({ nodeId: self, epoch: null }))
        let attempt: Effect.Effect<number, NatsError | RevisionMismatch> | undefined
        if (Option.isNone(record)) {
          attempt = bucket.create(key, fresh)
        } else {
          const { revision, value } = record.value
          const holder = Option.map(decodeLease(value), (v) => v.nodeId)
          const holderGone = Option.match(holder, { onNone: () => true, onSome: (id) => !live.has(id) })
          // Our own leftover lease (e.g. after self-fencing) is as good as free.
          const ours = Option.contains(holder, self)
          if (ours || (holderGone && unchangedFor >= goneQuiet) || unchangedFor >= leaseTtl) {
            attempt = bucket.update(key, fresh, revision)
          }
        }
        if (attempt === undefined) return
        const revision = yield* attempt
        sightings.delete(shard)
        yield* FiberMap.run(fibers, shard, holdShard(shard, baseNow + revision, revision, now))
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
      const live = yield* membership.live
      // Until this node sees its own heartbeat, its view of the cluster cannot be trusted.
      if (!live.some((node) => node.entry.nodeId === self)) return
      const liveIds = new Set(live.map((node) => node.entry.nodeId as string))
      const candidates = yield* membership.candidates
      base = yield* epochBase(bucket, floor.highest).pipe(
        // Not the client's 5 s while a bucket elects a leader: the next pass (a heartbeat away) asks again.
        Effect.timeout(config.heartbeat),
        Effect.tapError((error) => Effect.logWarning("could not read the epoch base; taking no shards now", error)),
        Effect.orElseSucceed(() => undefined)
      )
      const view = `${candidates.join(",")}${(yield* membership.draining) ? ` (${self} draining)` : ""}`
      if (view !== lastView) {
        yield* Effect.logInfo("members changed").pipe(Effect.annotateLogs({ self, candidates: view }))
        if (candidates.length === 0 && held.size > 0) {
          yield* Effect.logWarning("draining, but no other node can take the shards: keeping them until one can")
        }
        lastView = view
      }
      const toRelease: Array<number> = []
      const toAcquire: Array<number> = []
      for (let shard = 0; shard < config.shards; shard++) {
        const desired = ownerOf(shard, candidates)
        const running = yield* FiberMap.has(fibers, shard)
        if (running && desired !== undefined && desired !== self) toRelease.push(shard)
        else if (!running && desired === self) toAcquire.push(shard)
      }
      // Shards that would come here if a node silent for two heartbeats turned out gone: their leases are read now,
      // so that by the time it counts as gone they have been seen standing still (see tryAcquire).
      const reference = silenceReference(yield* monotonicMillis, live, heartbeat, nodeTtl)
      const suspects = new Set(
        live.filter((node) => node.entry.nodeId !== self && reference - node.seenAt >= 2 * heartbeat)
          .map((node) => node.entry.nodeId as string)
      )
      if (suspects.size > 0) {
        const survivors = candidates.filter((id) => !suspects.has(id))
        const toSight: Array<number> = []
        for (let shard = 0; shard < config.shards; shard++) {
          const desired = ownerOf(shard, candidates)
          if (desired !== undefined && suspects.has(desired) && ownerOf(shard, survivors) === self) toSight.push(shard)
        }
        yield* Effect.forEach(toSight, (shard) => Effect.ignore(sight(shard)), { concurrency: 16, discard: true })
      }
      // Handover is rate-limited so a joining node or a drain moves sessions a few at a time instead of
      // disconnecting them all at once: at most HANDOVER_BATCH shards are between owners at any moment (released
      // here, not yet taken by their new owner), however slowly the new owner picks them up. A batch's shards stop
      // concurrently. A shard nobody took within LEASE_TTL (its new owner died) stops counting.
      const now = yield* monotonicMillis
      yield* Effect.forEach(handingOver, ([shard, since]) =>
        Effect.gen(function*() {
          const record = yield* bucket.get(leaseKey(shard))
          const holder = Option.flatMap(
            Option.filter(record, (r) => r.operation === "PUT"),
            (r) => Option.map(decodeLease(r.value), (lease) => lease.nodeId)
          )
          // Our own lease is taken only if we hold the shard again (the assignment changed back); otherwise it is
          // a release that did not reach NATS, which another node may take once it has aged LEASE_TTL.
          const taken = Option.isSome(holder) && (holder.value !== self || (yield* FiberMap.has(fibers, shard)))
          if (taken || now - since >= leaseTtl) handingOver.delete(shard)
        }).pipe(Effect.ignore), { concurrency: "unbounded", discard: true })
      const releasing = toRelease.slice(0, Math.max(0, config.handoverBatch - handingOver.size))
      for (const shard of releasing) handingOver.set(shard, now)
      yield* Effect.forEach(releasing, (shard) => FiberMap.remove(fibers, shard), {
        concurrency: "unbounded",
        discard: true
      })
      yield* Effect.forEach(toAcquire, (shard) => tryAcquire(shard, liveIds), { concurrency: 16, discard: true })
      if (held.size !== lastHeld) {
        lastHeld = held.size
        yield* Effect.logInfo(`holding ${held.size} of ${config.shards} shards`)
      }
    }).pipe(Effect.withSpan("ShardLeases.reconcile"))

    // Stopping (SIGTERM): say so first, so the others know the new owners while this node releases every shard at
    // once (this finalizer runs before the shards' own, which release them).
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        stoppingSince = yield* monotonicMillis
        yield* Effect.logInfo("stopping: releasing every shard").pipe(Effect.annotateLogs({ shards: held.size }))
        yield* membership.setDraining(true).pipe(SlowStops.track("saying this node is draining"))
      })
    )

    const untilNextPass = Effect.gen(function*() {
      const now = yield* monotonicMillis
      return Duration.millis(nextPassIn(now, yield* membership.live, self, heartbeat, nodeTtl))
    })

    // Let nodes that start together see each other before anyone takes shards.
    yield* Effect.sleep(Duration.times(config.heartbeat, 2)).pipe(
      Effect.zipRight(reconcile.pipe(Effect.zipRight(Effect.flatMap(untilNextPass, Effect.sleep)), Effect.forever)),
      Effect.forkScoped
    )

    return {
      held: Effect.sync(() => Array.from(held.values()).sort((a, b) => a.shard - b.shard)),
      reconcile
    }
  })

  /** Needs a LeaseKeeper: `LeaseKeeper.onThread` in a node, built before its Membership. */
  static readonly layer = Layer.scoped(ShardLeases, ShardLeases.make)
}
