import { describe, expect, it } from "@effect/vitest"
import { NodeId } from "@wacluster/domain/Ids"
import { Duration, Effect, Exit, Layer, Redacted, Scope } from "effect"
import { Schema } from "effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ownerOf } from "../src/Assignment.js"
import { ClusterConfig } from "../src/ClusterConfig.js"
import { Membership, NodeEntry, NODES_BUCKET } from "../src/Membership.js"
import { Nats } from "../src/Nats.js"
import { leaseKey, LeaseValue, ShardLeases, ShardLifecycle, SHARDS_BUCKET } from "../src/ShardLeases.js"
import { eventually, privateNats } from "./support.js"

const SHARDS = 16
const config = {
  shards: SHARDS,
  heartbeat: Duration.millis(100),
  nodeTtl: Duration.millis(500),
  leaseTtl: Duration.millis(900)
}

/** Which node runs each shard's work right now, and how often two ran one shard at once. */
const makeTracker = () => {
  const active = new Map<number, string>()
  const epochs = new Map<number, number>()
  let overlaps = 0
  const lifecycle = (nodeId: string) =>
    ShardLifecycle.of({
      run: (shard, epoch) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            if (active.has(shard)) overlaps++
            active.set(shard, nodeId)
            epochs.set(shard, epoch)
          }),
          () => Effect.sync(() => active.get(shard) === nodeId && active.delete(shard))
        )
    })
  const heldBy = (nodeId: string) => [...active].filter(([, n]) => n === nodeId).map(([s]) => s).sort((a, b) => a - b)
  return { active, epochs, lifecycle, heldBy, overlaps: () => overlaps }
}

const startNode = (nodeId: string, url: string, tracker: ReturnType<typeof makeTracker>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const layer = ShardLeases.layer.pipe(
      Layer.provideMerge(Membership.layer({ nodeId: NodeId.make(nodeId), version: "test" })),
      Layer.provide(Layer.succeed(ShardLifecycle, tracker.lifecycle(nodeId))),
      Layer.provideMerge(Nats.layer({ url: Redacted.make(url), name: nodeId })),
      Layer.provide(ClusterConfig.layerWith(config))
    )
    yield* Layer.buildWithScope(layer, scope)
    return { stop: Scope.close(scope, Exit.void) }
  })

const desiredOf = (nodeId: string, nodes: ReadonlyArray<string>) =>
  Array.from({ length: SHARDS }, (_, s) => s).filter((s) => ownerOf(s, nodes) === nodeId)

describe("ShardLeases on a real nats-server", () => {
  it.live(
    "one node takes every shard; a second node takes its rendezvous share; a leaver's shards return",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const nats = yield* privateNats()
        const tracker = makeTracker()
        const a = yield* startNode("node-a", nats.url, tracker)
        yield* eventually(
          () => tracker.heldBy("node-a").length === SHARDS,
          "5 seconds",
          "node-a holds all shards",
          () => [...tracker.active]
        )

        const b = yield* startNode("node-b", nats.url, tracker)
        const wantB = desiredOf("node-b", ["node-a", "node-b"])
        expect(wantB.length).toBeGreaterThan(0)
        yield* eventually(
          () =>
            JSON.stringify(tracker.heldBy("node-b")) === JSON.stringify(wantB) &&
            tracker.heldBy("node-a").length === SHARDS - wantB.length,
          "5 seconds",
          "the shards split by rendezvous"
        )

        const leftAt = Date.now()
        yield* b.stop
        yield* eventually(() => tracker.heldBy("node-a").length === SHARDS, "5 seconds", "node-a takes back all")
        // A graceful leave releases leases at once: no waiting for LEASE_TTL.
        expect(Date.now() - leftAt).toBeLessThan(Duration.toMillis(config.leaseTtl) * 2)
        expect(tracker.overlaps()).toBe(0)
        yield* a.stop
        expect(tracker.active.size).toBe(0)
      })),
    30_000
  )

  it.live(
    "takes over the leases of a node that died only after it stopped heartbeating, with higher epochs",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const nats = yield* privateNats()
        const raw = yield* Layer.build(Nats.layer({ url: Redacted.make(nats.url), name: "ghost-writer" }))
        const client = raw.unsafeMap.get(Nats.key) as Nats["Type"]
        const nodes = yield* client.bucket(NODES_BUCKET)
        const shards = yield* client.bucket(SHARDS_BUCKET)
        // A node that wrote its membership and leases once, then died without releasing anything.
        const ghost = new NodeEntry({
          nodeId: NodeId.make("ghost"),
          startedAt: Schema.decodeSync(Schema.DateTimeUtc)(new Date().toISOString()),
          draining: false,
          version: "test"
        })
        yield* nodes.put("ghost", new TextEncoder().encode(Schema.encodeSync(Schema.parseJson(NodeEntry))(ghost)))
        const ghostRevisions = new Map<number, number>()
        for (let shard = 0; shard < SHARDS; shard++) {
          const value = Schema.encodeSync(Schema.parseJson(LeaseValue))(new LeaseValue({ nodeId: "ghost", epoch: 1 }))
          ghostRevisions.set(shard, yield* shards.put(leaseKey(shard), new TextEncoder().encode(value)))
        }

        const tracker = makeTracker()
        const startedAt = Date.now()
        yield* startNode("node-a", nats.url, tracker)
        yield* eventually(() => tracker.heldBy("node-a").length === SHARDS, "10 seconds", "node-a takes every shard")
        // Not before the ghost could have been live: NODE_TTL after node-a first saw it.
        expect(Date.now() - startedAt).toBeGreaterThanOrEqual(Duration.toMillis(config.nodeTtl))
        for (const [shard, epoch] of tracker.epochs) expect(epoch).toBeGreaterThan(ghostRevisions.get(shard) ?? 0)
        expect(tracker.overlaps()).toBe(0)
      })),
    30_000
  )

  it.live(
    "stops a shard's work within 0.6 × LEASE_TTL when NATS goes away, and resumes when it is back",
    () =>
      Effect.gen(function*() {
        // NATS restarts with its storage, as a real server does.
        const dataDir = yield* Effect.acquireRelease(
          Effect.promise(() => mkdtemp(join(tmpdir(), "wacluster-nats-"))),
          (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
        )
        const serverScope = yield* Scope.make()
        const nats = yield* privateNats(undefined, dataDir).pipe(Scope.extend(serverScope))
        const tracker = makeTracker()
        yield* startNode("node-a", nats.url, tracker)
        yield* eventually(
          () => tracker.heldBy("node-a").length === SHARDS,
          "5 seconds",
          "node-a holds all shards",
          () => [...tracker.active]
        )

        const downAt = Date.now()
        yield* Scope.close(serverScope, Exit.void)
        yield* eventually(() => tracker.active.size === 0, "3 seconds", "every shard fenced", () => [...tracker.active])
        const fencedAfter = Date.now() - downAt
        // The last renewal was at most LEASE_TTL/3 before the outage; fencing is due 0.6 × LEASE_TTL after it.
        expect(fencedAfter).toBeLessThanOrEqual(Duration.toMillis(config.leaseTtl) * 0.6 + 300)

        yield* privateNats(nats.port, nats.dataDir)
        yield* eventually(() => tracker.heldBy("node-a").length === SHARDS, "15 seconds", "shards taken again")
        expect(tracker.overlaps()).toBe(0)
      }).pipe(Effect.scoped),
    40_000
  )
})
