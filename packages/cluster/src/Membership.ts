/**
 * Node membership in the KV bucket `wa_nodes`: each node rewrites its entry every HEARTBEAT and watches the
 * bucket; it counts another node as live while it has seen that node's revision change within NODE_TTL by its own
 * monotonic clock (no cross-machine clock comparison). A node's entry also says whether it is draining (it wants
 * no shards) and how many shards and sessions it runs, for the operator's view.
 */
import { NodeId } from "@wacluster/domain/Ids"
import { Context, Data, Duration, Effect, Layer, Option, Ref, Schedule, Schema, Stream } from "effect"
import type { Scope } from "effect"
import { ClusterConfig, monotonicMillis } from "./ClusterConfig.js"
import { type KvRecord, Nats } from "./Nats.js"
import type { NatsError } from "./NatsError.js"
import * as SlowStops from "./SlowStops.js"

export const NODES_BUCKET = "wa_nodes"

class WatchStalled extends Data.TaggedError("WatchStalled") {}

export class NodeEntry extends Schema.Class<NodeEntry>("NodeEntry")({
  nodeId: NodeId,
  startedAt: Schema.DateTimeUtc,
  draining: Schema.Boolean,
  version: Schema.String,
  /** Shards and session actors the node runs, as of its last heartbeat (absent from older nodes). */
  shards: Schema.optional(Schema.NonNegativeInt),
  sessions: Schema.optional(Schema.NonNegativeInt)
}) {}

const NodeEntryJson = Schema.parseJson(NodeEntry)
const encodeEntry = Schema.encodeSync(NodeEntryJson)
const decodeEntry = Schema.decodeUnknownOption(NodeEntryJson)

export interface LiveNode {
  readonly entry: NodeEntry
  /** When this observer last saw the entry change, on its own monotonic clock. */
  readonly seenAt: number
}

export interface NodeLoad {
  readonly shards: number
  readonly sessions: number
}

interface Observation {
  readonly revision: number
  readonly seenAt: number
  readonly entry: NodeEntry
}

/**
 * Watches `wa_nodes` in the background and answers which nodes are live by this process's clock. Nodes use it
 * for their own view; gateways use it (without joining) for the operator's view of the cluster.
 */
export const observeNodes: Effect.Effect<
  Effect.Effect<ReadonlyArray<LiveNode>>,
  NatsError,
  ClusterConfig | Nats | Scope.Scope
> = Effect.gen(function*() {
  const config = yield* ClusterConfig
  const nats = yield* Nats
  const bucket = yield* nats.bucket(NODES_BUCKET, { history: 1, replicas: config.replicas })
  const view = makeView(Duration.toMillis(config.heartbeat), Duration.toMillis(config.nodeTtl))

  /** Applies one change of the bucket to the view, stamped with this process's clock. */
  const observe = (record: KvRecord) =>
    Effect.map(monotonicMillis, (now) => {
      if (record.operation !== "PUT") {
        // A deleted entry is a node that left on purpose: forget it at once.
        view.forget(now, record.key)
        return
      }
      const decoded = decodeEntry(new TextDecoder().decode(record.value))
      if (Option.isSome(decoded)) view.saw(now, record.key, record.revision, decoded.value)
    })

  // Live nodes beat every HEARTBEAT, so a watch silent for three of them has stalled (for example across a NATS
  // restart) or nobody is left: either way a new watch replays the bucket. It must be noticed well within
  // NODE_TTL, or a live node would look gone here and lose its shards to a takeover.
  yield* bucket.watch.pipe(
    Stream.timeoutFail(
      () => new WatchStalled(),
      Duration.min(Duration.times(config.heartbeat, 3), Duration.times(config.nodeTtl, 0.5))
    ),
    Stream.runForEach(observe),
    Effect.tapError((error) =>
      error._tag === "WatchStalled"
        ? Effect.logDebug("membership watch silent; restarting it")
        : Effect.logWarning("membership watch failed; restarting it", error)
    ),
    Effect.ignore,
    Effect.repeat(Schedule.spaced("250 millis")),
    Effect.forkScoped
  )

  return Effect.map(monotonicMillis, view.live)
})

/**
 * One observer's view of the membership bucket, by its own monotonic clock: when it last saw each node's entry
 * change, and from that which nodes are live.
 */
export const makeView = (heartbeat: number, nodeTtl: number) => {
  const observed = new Map<string, Observation>()
  /** The first change heard after a silence that judged nobody: the silence counts against no one. */
  const resume = (now: number) => {
    const shift = silenceSoFar(now, observed.values(), heartbeat, nodeTtl)
    if (shift === 0) return
    for (const [key, o] of observed) observed.set(key, { ...o, seenAt: o.seenAt + shift })
  }
  return {
    /** The entry under `key` as read at `now`; it counts as a sign of life only when its revision changed. */
    saw: (now: number, key: string, revision: number, entry: NodeEntry): void => {
      resume(now)
      const previous = observed.get(key)
      if (previous === undefined || previous.revision !== revision) observed.set(key, { revision, seenAt: now, entry })
    },
    /** The entry under `key` was deleted: a node that left on purpose, gone at once. */
    forget: (now: number, key: string): void => {
      resume(now)
      observed.delete(key)
    },
    live: (now: number): ReadonlyArray<LiveNode> => {
      const all = Array.from(observed.values())
      const reference = silenceReference(now, all, heartbeat, nodeTtl)
      return all
        .filter((o) => reference - o.seenAt < nodeTtl)
        .map((o) => ({ entry: o.entry, seenAt: o.seenAt }))
    }
  }
}

/**
 * The moment silences are measured to. Normally now; but a process that has heard no heartbeat at all (not even
 * its own) for two heartbeats was more likely stalled itself (a long GC, a starved event loop: timers run before
 * the heartbeats waiting in its socket are read) than left by every other node at once. Then it measures to the
 * last heartbeat it heard, so its own silence makes no live node look gone and lose its shards to a takeover. A
 * silence longer than 3 × NODE_TTL is believed.
 */
export const silenceReference = (
  now: number,
  observed: Iterable<{ readonly seenAt: number }>,
  heartbeat: number,
  nodeTtl: number
): number => now - silenceSoFar(now, observed, heartbeat, nodeTtl)

/**
 * How long the silence up to now has lasted, when it is one that judges nobody (no heartbeat at all, not even this
 * node's own, for more than two heartbeats and less than 3 × NODE_TTL); else 0. Heard when such a silence ends,
 * it is how far every node's last sighting moves forward: heartbeats come back one by one after it (a membership
 * bucket that elected a new leader, a stalled process reading its socket again), and the nodes' silences must
 * resume where they stood when it began rather than include it all at once, or every node whose beat comes a
 * moment after the first would look gone and lose its shards while it still renews them.
 */
export const silenceSoFar = (
  now: number,
  observed: Iterable<{ readonly seenAt: number }>,
  heartbeat: number,
  nodeTtl: number
): number => {
  let newest = Number.NEGATIVE_INFINITY
  for (const o of observed) newest = Math.max(newest, o.seenAt)
  const quiet = now - newest
  return quiet > 2 * heartbeat && quiet < 3 * nodeTtl ? quiet : 0
}

export class Membership extends Context.Tag("@wacluster/cluster/Membership")<Membership, {
  readonly self: NodeId
  /** Live nodes, including this one once its own heartbeat has been seen. */
  readonly live: Effect.Effect<ReadonlyArray<LiveNode>>
  /** Ids of live nodes that are not draining: the candidates for shard ownership. */
  readonly candidates: Effect.Effect<ReadonlyArray<NodeId>>
  /** Whether this node is draining (giving its shards away and taking none). */
  readonly draining: Effect.Effect<boolean>
  /** Starts or ends draining; announced at once, not at the next heartbeat. */
  readonly setDraining: (draining: boolean) => Effect.Effect<void>
  /** What this node runs, sent with its next heartbeat. */
  readonly reportLoad: (load: NodeLoad) => Effect.Effect<void>
}>() {
  static readonly make = Effect.fn("Membership.make")(function*(options: { nodeId: NodeId; version: string }) {
    const config = yield* ClusterConfig
    const nats = yield* Nats
    const bucket = yield* nats.bucket(NODES_BUCKET, { history: 1, replicas: config.replicas })
    const startedAt = yield* Effect.map(Effect.clockWith((clock) => clock.currentTimeMillis), Number)
    const entry = yield* Ref.make(
      new NodeEntry({
        nodeId: options.nodeId,
        startedAt: Schema.decodeSync(Schema.DateTimeUtc)(new Date(startedAt).toISOString()),
        draining: false,
        version: options.version,
        shards: 0,
        sessions: 0
      })
    )
    const live = yield* observeNodes

    const beat = Effect.flatMap(
      Ref.get(entry),
      (current) => bucket.put(options.nodeId, new TextEncoder().encode(encodeEntry(current)))
    )
    const beatLogged = beat.pipe(
      // A put that hangs (a starved NATS, a bucket electing its leader) must not hold back the next heartbeat: the
      // others would count this node gone after NODE_TTL while it still holds its leases.
      Effect.timeoutFail({ duration: config.heartbeat, onTimeout: () => "no answer within a heartbeat" }),
      Effect.tapError((error) => Effect.logWarning("membership heartbeat failed", error)),
      Effect.ignore
    )

    yield* Effect.acquireRelease(
      // A NATS cluster started beside the node may still be electing its JetStream leaders: keep trying for a while.
      beat.pipe(
        Effect.tapError((error) => Effect.logWarning("first membership heartbeat failed; trying again", error)),
        Effect.retry({ schedule: Schedule.spaced("500 millis"), times: 40 })
      ),
      () =>
        bucket.remove(options.nodeId).pipe(
          Effect.tapError((error) => Effect.logWarning("could not leave membership", error)),
          Effect.ignore,
          SlowStops.track("leaving membership")
        )
    )
    yield* beatLogged.pipe(Effect.repeat(Schedule.spaced(config.heartbeat)), Effect.forkScoped)

    return {
      self: options.nodeId,
      live,
      candidates: Effect.map(live, (nodes) => nodes.filter((n) => !n.entry.draining).map((n) => n.entry.nodeId).sort()),
      draining: Effect.map(Ref.get(entry), (current) => current.draining),
      setDraining: (draining: boolean) =>
        Effect.gen(function*() {
          const changed = yield* Ref.modify(entry, (current) =>
            current.draining === draining
              ? [false, current]
              : [true, new NodeEntry({ ...current, draining })])
          if (!changed) return
          yield* Effect.logInfo(draining ? "draining: handing every shard to the other nodes" : "draining ended")
          yield* beatLogged
        }),
      reportLoad: (load: NodeLoad) =>
        Ref.update(entry, (current) =>
          current.shards === load.shards && current.sessions === load.sessions
            ? current
            : new NodeEntry({ ...current, shards: load.shards, sessions: load.sessions }))
    }
  })

  static readonly layer = (options: { nodeId: NodeId; version: string }) =>
    Layer.scoped(Membership, Membership.make(options))
}
