/**
 * The operator's view of the cluster, for gateways (which never join it): live nodes from `wa_nodes` by this
 * process's clock, every shard's lease from `wa_shards`, each shard's desired owner, and the moves in progress.
 */
import { ClusterNodeView, ClusterOverview, ShardMove, ShardOwnerView } from "@wacluster/domain/Control"
import { NodeId } from "@wacluster/domain/Ids"
import { Context, Effect, Layer, Option, Schema } from "effect"
import { ownerOf } from "./Assignment.js"
import { ClusterConfig } from "./ClusterConfig.js"
import { type LiveNode, observeNodes } from "./Membership.js"
import { Nats } from "./Nats.js"
import type { NatsError } from "./NatsError.js"
import { EPOCH_BASE_KEY, leaseKey, LeaseValue, SHARDS_BUCKET } from "./ShardLeases.js"

const decodeLease = Schema.decodeUnknownOption(Schema.parseJson(LeaseValue))
const decodeNodeId = Schema.decodeUnknownOption(NodeId)

export class ClusterView extends Context.Tag("@wacluster/cluster/ClusterView")<ClusterView, {
  /** Live nodes as this process sees them. */
  readonly live: Effect.Effect<ReadonlyArray<LiveNode>>
  readonly overview: Effect.Effect<ClusterOverview, NatsError>
}>() {
  static readonly make = Effect.gen(function*() {
    const config = yield* ClusterConfig
    const nats = yield* Nats
    const live = yield* observeNodes
    const leases = yield* nats.bucket(SHARDS_BUCKET, { history: 1, replicas: config.replicas })

    const leaseOf = (shard: number, base: number) =>
      Effect.map(leases.get(leaseKey(shard)), (record) =>
        Option.flatMap(
          Option.filter(record, (r) => r.operation === "PUT"),
          (r) =>
            Option.flatMap(
              decodeLease(new TextDecoder().decode(r.value)),
              (lease) =>
                Option.map(decodeNodeId(lease.nodeId), (owner) => ({ owner, epoch: lease.epoch ?? base + r.revision }))
            )
        ))

    const overview = Effect.gen(function*() {
      const nodes = yield* live
      const candidates = nodes.filter((n) => !n.entry.draining).map((n) => n.entry.nodeId).sort()
      const base = Option.match(yield* leases.get(EPOCH_BASE_KEY), {
        onNone: () => 0,
        onSome: (record) => Number(new TextDecoder().decode(record.value))
      })
      const held = yield* Effect.forEach(
        Array.from({ length: config.shards }, (_, shard) => shard),
        (shard) => leaseOf(shard, base),
        { concurrency: 64 }
      )
      const shards = held.map((lease, shard) => {
        const desired = ownerOf(shard, candidates)
        return new ShardOwnerView({
          shard,
          owner: Option.match(lease, { onNone: () => null, onSome: (l) => l.owner }),
          epoch: Option.match(lease, { onNone: () => null, onSome: (l) => l.epoch }),
          desiredOwner: desired === undefined ? null : NodeId.make(desired)
        })
      })
      const count = new Map<string, number>()
      for (const shard of shards) if (shard.owner !== null) count.set(shard.owner, (count.get(shard.owner) ?? 0) + 1)
      return new ClusterOverview({
        nodes: nodes
          .map((n) =>
            new ClusterNodeView({
              nodeId: n.entry.nodeId,
              liveSince: n.entry.startedAt,
              draining: n.entry.draining,
              version: n.entry.version,
              shards: count.get(n.entry.nodeId) ?? 0,
              sessions: n.entry.sessions ?? 0
            })
          )
          .sort((a, b) => a.nodeId.localeCompare(b.nodeId)),
        shards,
        moves: shards.flatMap((s) =>
          s.desiredOwner !== null && s.owner !== s.desiredOwner
            ? [new ShardMove({ shard: s.shard, from: s.owner, to: s.desiredOwner })]
            : []
        )
      })
    }).pipe(Effect.withSpan("ClusterView.overview"))

    return { live, overview }
  })

  static readonly layer = Layer.scoped(ClusterView, ClusterView.make)
}
