/**
 * The cluster as an operator runs it, on real processes (nats-server, Postgres, wa-sim, gateway, nodes): the
 * cluster view, draining a node (through the gateway and over plain NATS), a node joining, and a node killed.
 * Linked sessions move between nodes without a QR code and never run twice (wa-sim counts overlapping logins).
 */
import { connect } from "@nats-io/transport-node"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Fixture, startCluster } from "../support/ClusterFixture.js"
import { call, field } from "../support/Gateway.js"
import { eventually, type LinkedSession, sessionsOf, sleep } from "../support/Sessions.js"

const SESSIONS = 12
let fixture: Fixture
let gateway: string
let admin: string
let sessions: ReturnType<typeof sessionsOf>
let linked: ReadonlyArray<LinkedSession>

interface NodeView {
  readonly nodeId: string
  readonly draining: boolean
  readonly shards: number
  readonly sessions: number
}

interface Overview {
  readonly nodes: ReadonlyArray<NodeView>
  readonly shards: ReadonlyArray<{ shard: number; owner: string | null; epoch: number | null; desiredOwner: string }>
  readonly moves: ReadonlyArray<{ shard: number; from: string | null; to: string }>
}

const overview = async (): Promise<Overview> => {
  const reply = await call(gateway, "GET", "/admin/cluster", { bearer: admin })
  expect(reply.status, JSON.stringify(reply.body)).toBe(200)
  return reply.body as Overview
}

const nodeOf = (view: Overview, nodeId: string) => view.nodes.find((node) => node.nodeId === nodeId)

/** Settled: every shard held by its desired owner and every session connected, with no overlap ever. */
const settled = async (what: string) => {
  await eventually(what, overview, (view) => view.moves.length === 0 && view.shards.every((s) => s.owner !== null))
  await sessions.untilAllConnected(linked, what)
  expect((await fixture.sim.stats()).overlaps).toBe(0)
}

beforeAll(async () => {
  fixture = await startCluster({ nodes: 2, env: { HANDOVER_BATCH: "16" } })
  gateway = fixture.cluster.gatewayUrl
  admin = fixture.cluster.adminToken
  const tenant = await call(gateway, "POST", "/tenants", { bearer: admin, json: { name: "ops" } })
  sessions = sessionsOf(gateway, String(field(tenant.body, "token")), fixture.sim)
  linked = await sessions.linkMany(SESSIONS, { prefix: "ops", firstPhone: 4915100000000 })
}, 240_000)

afterAll(async () => {
  await fixture?.stop()
}, 60_000)

describe("the cluster, operated", () => {
  it("GET /admin/cluster: the nodes with their shards and sessions, every shard's owner and epoch, no moves", async () => {
    expect((await call(gateway, "GET", "/admin/cluster")).status).toBe(401)
    const tenant = await call(gateway, "POST", "/tenants", { bearer: admin, json: { name: "nosy" } })
    expect((await call(gateway, "GET", "/admin/cluster", { bearer: String(field(tenant.body, "token")) })).status)
      .toBe(401)

    const view = await eventually(
      "both nodes report their sessions",
      overview,
      (v) => v.nodes.reduce((sum, node) => sum + node.sessions, 0) === SESSIONS
    )
    expect(view.nodes.map((node) => node.nodeId)).toEqual(["node-1", "node-2"])
    expect(view.nodes.every((node) => !node.draining && node.shards > 0)).toBe(true)
    expect(view.nodes.reduce((sum, node) => sum + node.shards, 0)).toBe(256)
    expect(view.shards).toHaveLength(256)
    for (const shard of view.shards) {
      expect(shard.owner).toBe(shard.desiredOwner)
      expect(shard.epoch).toBeGreaterThan(0)
    }
    expect(view.moves).toEqual([])
    const [first] = view.nodes
    expect(Date.parse(String(field(first, "liveSince")))).toBeLessThanOrEqual(Date.now())
  })

  it("refuses to drain a node that does not exist (404) or a malformed node id (400)", async () => {
    const missing = await call(gateway, "POST", "/admin/nodes/node-9/drain", { bearer: admin })
    expect(missing.status).toBe(404)
    expect(field(missing.body, "error", "code")).toBe("not_found")
    const malformed = await call(gateway, "POST", "/admin/nodes/NODE_1!/drain", { bearer: admin })
    expect(malformed.status).toBe(400)
    expect(field(malformed.body, "error", "code")).toBe("bad_request")
    expect((await call(gateway, "POST", "/admin/nodes/node-1/drain")).status).toBe(401)
  })

  it("draining a node moves its shards and linked sessions away without a QR, keeps it empty, and ends", async () => {
    const drained = await call(gateway, "POST", "/admin/nodes/node-1/drain", { bearer: admin })
    expect(drained.status, JSON.stringify(drained.body)).toBe(202)
    expect(drained.body).toMatchObject({ nodeId: "node-1", draining: true, otherNodes: 1 })

    await eventually("node-1 is empty", overview, (view) => nodeOf(view, "node-1")?.shards === 0)
    await settled("after the drain")
    const view = await overview()
    expect(nodeOf(view, "node-1")).toMatchObject({ draining: true, shards: 0 })
    expect(nodeOf(view, "node-2")?.shards).toBe(256)
    // It stays empty while it drains.
    await sleep(3000)
    expect(nodeOf(await overview(), "node-1")?.shards).toBe(0)

    const ended = await call(gateway, "DELETE", "/admin/nodes/node-1/drain", { bearer: admin })
    expect(ended.status).toBe(200)
    expect(ended.body).toMatchObject({ nodeId: "node-1", draining: false })
    await eventually("node-1 takes its share again", overview, (v) => (nodeOf(v, "node-1")?.shards ?? 0) > 0)
    await settled("after the drain ended")
  }, 120_000)

  it("drains over plain NATS too, as an operator with the nats CLI would", async () => {
    const nc = await connect({ servers: fixture.cluster.natsUrl })
    try {
      const ask = async (payload: string) =>
        JSON.parse(new TextDecoder().decode((await nc.request("wa.ctl.nodes.node-2.drain", payload)).data)) as unknown
      expect(await ask("not json")).toMatchObject({ error: expect.stringContaining("draining") })
      expect(await ask(JSON.stringify({ draining: true }))).toMatchObject({ nodeId: "node-2", draining: true })
      await eventually("node-2 is empty", overview, (view) => nodeOf(view, "node-2")?.shards === 0)
      await settled("after draining node-2 over NATS")
      expect(await ask(JSON.stringify({ draining: false }))).toMatchObject({ nodeId: "node-2", draining: false })
      await eventually("node-2 takes its share again", overview, (v) => (nodeOf(v, "node-2")?.shards ?? 0) > 0)
      await settled("after ending that drain")
    } finally {
      await nc.close()
    }
  }, 120_000)

  it("a joining node takes about a third of the shards; the sessions on them move without a QR", async () => {
    await Effect.runPromise(fixture.cluster.addNode())
    await eventually("node-3 takes its share", overview, (view) => (nodeOf(view, "node-3")?.shards ?? 0) > 40)
    await settled("after node-3 joined")
    const view = await overview()
    for (const node of view.nodes) expect(node.shards).toBeGreaterThan(256 / 3 / 2)
  }, 120_000)

  it("a killed node's sessions resume on the others after the lease expires, without a QR, never twice", async () => {
    const view = await eventually(
      "every node reports its sessions",
      overview,
      (v) => v.nodes.reduce((sum, node) => sum + node.sessions, 0) === SESSIONS
    )
    const busiest = [...view.nodes].sort((a, b) => b.sessions - a.sessions)[0]
    expect(busiest?.sessions).toBeGreaterThan(0)
    if (busiest === undefined) return
    const killedAt = Date.now()
    await Effect.runPromise(fixture.cluster.stopNode(busiest.nodeId, "SIGKILL"))
    await settled("after the kill")
    const recovered = Date.now() - killedAt
    // NODE_TTL (5 s) to notice, then a reconnect from Postgres: far inside this bound even on a busy machine.
    expect(recovered).toBeLessThan(30_000)
    expect(nodeOf(await overview(), busiest.nodeId)).toBeUndefined()
  }, 120_000)
})
