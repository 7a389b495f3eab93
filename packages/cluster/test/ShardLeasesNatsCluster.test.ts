import { describe, expect, it } from "@effect/vitest"
import { NodeId } from "@wacluster/domain/Ids"
import * as NatsCluster from "@wacluster/infra/NatsCluster"
import { Context, Duration, Effect, Layer, Option, Redacted, Schedule, Schema } from "effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ClusterConfig, type ClusterConfigShape } from "../src/ClusterConfig.js"
import { LeaseKeeper } from "../src/LeaseKeeper.js"
import { Membership } from "../src/Membership.js"
import { Nats } from "../src/Nats.js"
import { EpochFloor, leaseKey, ShardLeases, ShardLifecycle, SHARDS_BUCKET } from "../src/ShardLeases.js"
import { eventually } from "./support.js"

const SHARDS = 8

const privateCluster = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), "wacluster-nats-cluster-"))),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )
  return yield* NatsCluster.start({ dataDir: dir, size: 3, startTimeout: "40 seconds" })
})

/** Which shards run on the node, how many times one stopped, and whether two runs of one shard overlapped. */
const makeTracker = () => {
  const active = new Set<number>()
  let stops = 0
  let overlaps = 0
  const lifecycle = ShardLifecycle.of({
    run: (shard) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          if (active.has(shard)) overlaps++
          active.add(shard)
        }),
        () =>
          Effect.sync(() => {
            active.delete(shard)
            stops++
          })
      )
  })
  return { active, lifecycle, stops: () => stops, overlaps: () => overlaps }
}

/** One node (membership, leases, its own NATS client given every server) for the rest of the scope. */
const startNode = (
  cluster: NatsCluster.NatsCluster,
  tracker: ReturnType<typeof makeTracker>,
  config: Partial<ClusterConfigShape>
) =>
  Layer.build(
    ShardLeases.layer.pipe(
      Layer.provide(EpochFloor.none),
      Layer.provideMerge(Membership.layer({ nodeId: NodeId.make("node-a"), version: "test" })),
      Layer.provide(LeaseKeeper.onThread),
      Layer.provide(Layer.succeed(ShardLifecycle, tracker.lifecycle)),
      Layer.provideMerge(Nats.layer({ url: Redacted.make(cluster.url), name: "node-a" })),
      Layer.provide(ClusterConfig.layerWith({ shards: SHARDS, replicas: 3, ...config }))
    )
  )

const observer = (cluster: NatsCluster.NatsCluster) =>
  Effect.map(Layer.build(Nats.layer({ url: Redacted.make(cluster.url), name: "observer" })), Context.get(Nats))

const StreamLeader = Schema.parseJson(Schema.Struct({ cluster: Schema.Struct({ leader: Schema.String }) }))

describe("ShardLeases on a 3-server NATS cluster", () => {
  it.scopedLive(
    "with every server down a node fences all its shards, and takes them back once NATS returns",
    () =>
      Effect.gen(function*() {
        const config = {
          heartbeat: Duration.millis(100),
          nodeTtl: Duration.millis(500),
          leaseTtl: Duration.millis(900)
        }
        const cluster = yield* privateCluster
        const tracker = makeTracker()
        yield* startNode(cluster, tracker, config)
        yield* eventually(() => tracker.active.size === SHARDS, "10 seconds", "node-a holds every shard")

        yield* Effect.forEach(cluster.servers, (server) => server.kill(), { concurrency: "unbounded" })
        const downAt = Date.now()
        yield* eventually(() => tracker.active.size === 0, "3 seconds", "every shard fenced", () => [...tracker.active])
        // The last renewal was at most LEASE_TTL/3 before the outage; fencing is due 0.6 × LEASE_TTL after it.
        expect(Date.now() - downAt).toBeLessThanOrEqual(Duration.toMillis(config.leaseTtl) * 0.6 + 300)

        // The same node, with the same NATS connection: nothing restarts it.
        yield* Effect.forEach(cluster.servers, (server) => server.restart, { concurrency: "unbounded" })
        yield* eventually(() => tracker.active.size === SHARDS, "40 seconds", "every shard taken back")
        expect(tracker.overlaps()).toBe(0)
      }),
    60_000
  )

  it.scopedLive(
    "losing the leases' stream leader stops no shard when LEASE_TTL outlasts the election",
    () =>
      Effect.gen(function*() {
        // JetStream needs 4-9 s to elect a new stream leader; fencing is due 0.6 × 20 s = 12 s after a renewal.
        const config = { heartbeat: Duration.seconds(1), nodeTtl: Duration.seconds(15), leaseTtl: Duration.seconds(20) }
        const cluster = yield* privateCluster
        const tracker = makeTracker()
        yield* startNode(cluster, tracker, config)
        yield* eventually(() => tracker.active.size === SHARDS, "10 seconds", "node-a holds every shard")

        const nats = yield* observer(cluster)
        const leases = yield* nats.bucket(SHARDS_BUCKET, { replicas: 3 })
        const revisions = (shards: ReadonlyArray<number>) =>
          Effect.forEach(shards, (shard) =>
            Effect.map(
              leases.get(leaseKey(shard)),
              Option.match({ onNone: () => 0, onSome: (r) => r.revision })
            ))
        const shards = Array.from({ length: SHARDS }, (_, shard) => shard)
        const before = yield* revisions(shards)
        const info = yield* nats.request(`$JS.API.STREAM.INFO.KV_${SHARDS_BUCKET}`, new Uint8Array(), "5 seconds").pipe(
          Effect.flatMap((reply) => Schema.decodeUnknown(StreamLeader)(new TextDecoder().decode(reply)))
        )
        const leader = cluster.servers.find((server) => server.name === info.cluster.leader)
        if (leader === undefined) return yield* Effect.dieMessage(`no server named ${info.cluster.leader}`)
        yield* leader.kill()

        // Every lease renewed again (after the election), and no shard stopped meanwhile.
        yield* Effect.gen(function*() {
          const now = yield* revisions(shards).pipe(Effect.orElseSucceed(() => before))
          return now.every((revision, index) => revision > (before[index] ?? 0))
        }).pipe(
          Effect.repeat({ until: (renewed) => renewed, schedule: Schedule.spaced("250 millis") }),
          Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => "leases were not renewed after the election" })
        )
        expect(tracker.stops()).toBe(0)
        expect(tracker.active.size).toBe(SHARDS)
        expect(tracker.overlaps()).toBe(0)
      }),
    60_000
  )
})
