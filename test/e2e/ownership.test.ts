/**
 * The desired state lives in Postgres, not in a node: a session created while no node runs is answered at once,
 * its status is a clean 503 with Retry-After while nobody owns it, and it starts as soon as a node joins. A node
 * that leaves gracefully hands its sessions to the others.
 */
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Fixture, startCluster } from "../support/ClusterFixture.js"
import { call, field, text } from "../support/Gateway.js"

let fixture: Fixture
let gateway: string

beforeAll(async () => {
  fixture = await startCluster({ nodes: 0, env: { ROUTER_BUDGET: "2 seconds" } })
  gateway = fixture.cluster.gatewayUrl
}, 120_000)

afterAll(async () => {
  await fixture?.stop()
}, 60_000)

const statusOf = (id: string, key: string) => call(gateway, "GET", `/sessions/${id}/status`, { apiKey: key })

const eventually = async (check: () => Promise<boolean>, what: string, seconds = 30) => {
  const deadline = Date.now() + seconds * 1000
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  throw new Error(`timed out: ${what}`)
}

describe("ownership, end to end", () => {
  it("accepts sessions with no node running, answers 503 + Retry-After, and serves them once a node joins", async () => {
    const tenant = await call(gateway, "POST", "/tenants", { bearer: fixture.cluster.adminToken, json: { name: "t" } })
    const token = text(tenant.body, "token")

    const started = Date.now()
    const created = await call(gateway, "POST", "/sessions", { bearer: token, json: { name: "Early", city: "lagos" } })
    expect(created.status).toBe(201)
    // No owner to start it: creation still answers promptly.
    expect(Date.now() - started).toBeLessThan(3000)
    const id = text(created.body, "session", "id")
    const key = text(created.body, "apiKey", "key")

    const unavailable = await statusOf(id, key)
    expect(unavailable.status).toBe(503)
    expect(field(unavailable.body, "error", "code")).toBe("unavailable")
    expect(Number(unavailable.headers.get("retry-after"))).toBeGreaterThan(0)

    await Effect.runPromise(fixture.cluster.addNode())
    await eventually(async () => (await statusOf(id, key)).status === 200, "the session answers from the new node")
    expect(field((await statusOf(id, key)).body, "status")).toBe("connecting")
  })

  it("moves a gracefully stopped node's sessions to the remaining node", async () => {
    await Effect.runPromise(fixture.cluster.addNode())
    const tenant = await call(gateway, "POST", "/tenants", { bearer: fixture.cluster.adminToken, json: { name: "u" } })
    const token = text(tenant.body, "token")
    const sessions: Array<{ id: string; key: string }> = []
    for (let i = 0; i < 6; i++) {
      const created = await call(gateway, "POST", "/sessions", {
        bearer: token,
        json: { name: `s${i}`, city: "london" }
      })
      sessions.push({ id: text(created.body, "session", "id"), key: text(created.body, "apiKey", "key") })
    }
    // Both nodes own shards.
    await eventually(async () => new Set((await fixture.owners(256)).values()).size === 2, "two owners")

    const [first] = fixture.cluster.nodes
    expect(first).toBeDefined()
    if (first === undefined) return
    // A graceful stop is quick: well within the 10 s after which it would be killed (exit code not 0).
    const stopping = Date.now()
    expect(await Effect.runPromise(fixture.cluster.stopNode(first.nodeId, "SIGTERM"))).toBe(0)
    expect(Date.now() - stopping).toBeLessThan(5_000)

    await eventually(async () => {
      const owners = new Set((await fixture.owners(256)).values())
      return owners.size === 1 && !owners.has(first.nodeId)
    }, "the survivor owns every shard")
    for (const session of sessions) {
      await eventually(async () => (await statusOf(session.id, session.key)).status === 200, `${session.id} answers`)
    }
  })
})
