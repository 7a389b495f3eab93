/**
 * Node membership in the KV bucket `wa_nodes`: each node rewrites its entry every HEARTBEAT and watches the
 * bucket; it counts another node as live while it has seen that node's revision change within NODE_TTL by its own
 * monotonic clock (no cross-machine clock comparison).
 */
import { NodeId } from "@wacluster/domain/Ids"
import { Context, Data, Duration, Effect, Layer, Option, Schedule, Schema, Stream } from "effect"
import { ClusterConfig, monotonicMillis } from "./ClusterConfig.js"
import { type KvRecord, Nats } from "./Nats.js"

export const NODES_BUCKET = "wa_nodes"

class WatchStalled extends Data.TaggedError("WatchStalled") {}

export class NodeEntry extends Schema.Class<NodeEntry>("NodeEntry")({
  nodeId: NodeId,
  startedAt: Schema.DateTimeUtc,
  draining: Schema.Boolean,
  version: Schema.String
}) {}

const NodeEntryJson = Schema.parseJson(NodeEntry)
const encodeEntry = Schema.encodeSync(NodeEntryJson)
const decodeEntry = Schema.decodeUnknownOption(NodeEntryJson)

export interface LiveNode {
  readonly entry: NodeEntry
  /** When this node last saw the entry change, on its own monotonic clock. */
  readonly seenAt: number
}

interface Observation {
  readonly revision: number
  readonly seenAt: number
  readonly entry: NodeEntry
}

export class Membership extends Context.Tag("@wacluster/cluster/Membership")<Membership, {
  readonly self: NodeId
  /** Live nodes, including this one once its own heartbeat has been seen. */
  readonly live: Effect.Effect<ReadonlyArray<LiveNode>>
  /** Ids of live nodes that are not draining: the candidates for shard ownership. */
  readonly candidates: Effect.Effect<ReadonlyArray<NodeId>>
}>() {
  static readonly make = Effect.fn("Membership.make")(function*(options: { nodeId: NodeId; version: string }) {
    const config = yield* ClusterConfig
    const nats = yield* Nats
    const bucket = yield* nats.bucket(NODES_BUCKET, { history: 1, replicas: config.replicas })
    const startedAt = yield* Effect.map(Effect.clockWith((clock) => clock.currentTimeMillis), Number)
    const entry = new NodeEntry({
      nodeId: options.nodeId,
      startedAt: Schema.decodeSync(Schema.DateTimeUtc)(new Date(startedAt).toISOString()),
      draining: false,
      version: options.version
    })
    const observed = new Map<string, Observation>()
    const nodeTtl = Duration.toMillis(config.nodeTtl)

    const beat = bucket.put(options.nodeId, new TextEncoder().encode(encodeEntry(entry)))

    /** Applies one change of the bucket to the view, stamped with this node's clock. */
    const observe = (record: KvRecord) =>
      Effect.map(monotonicMillis, (now) => {
        if (record.operation !== "PUT") {
          // A deleted entry is a node that left on purpose: forget it at once.
          observed.delete(record.key)
          return
        }
        const decoded = decodeEntry(new TextDecoder().decode(record.value))
        if (Option.isNone(decoded)) return
        const previous = observed.get(record.key)
        if (previous === undefined || previous.revision !== record.revision) {
          observed.set(record.key, { revision: record.revision, seenAt: now, entry: decoded.value })
        }
      })

    const live = Effect.map(monotonicMillis, (now) =>
      Array.from(observed.values())
        .filter((o) => now - o.seenAt < nodeTtl)
        .map((o) => ({ entry: o.entry, seenAt: o.seenAt })))

    // Our own heartbeat lands in the bucket every HEARTBEAT, so a watch silent for three of them has stalled
    // (for example across a NATS restart): end it and open a new one.
    yield* bucket.watch.pipe(
      Stream.timeoutFail(() => new WatchStalled(), Duration.times(config.heartbeat, 3)),
      Stream.runForEach(observe),
      Effect.tapError((error) => Effect.logWarning("membership watch failed; restarting it", error)),
      Effect.ignore,
      Effect.repeat(Schedule.spaced("250 millis")),
      Effect.forkScoped
    )
    yield* Effect.acquireRelease(
      beat,
      () =>
        bucket.remove(options.nodeId).pipe(
          Effect.tapError((error) => Effect.logWarning("could not leave membership", error)),
          Effect.ignore
        )
    )
    yield* beat.pipe(
      Effect.tapError((error) => Effect.logWarning("membership heartbeat failed", error)),
      Effect.ignore,
      Effect.repeat(Schedule.spaced(config.heartbeat)),
      Effect.forkScoped
    )

    return {
      self: options.nodeId,
      live,
      candidates: Effect.map(live, (nodes) => nodes.filter((n) => !n.entry.draining).map((n) => n.entry.nodeId).sort())
    }
  })

  static readonly layer = (options: { nodeId: NodeId; version: string }) =>
    Layer.scoped(Membership, Membership.make(options))
}
