/**
 * The foundation end to end on real processes: a private nats-server, a fresh database, one gateway and two
 * nodes. Tenants and sessions are created through the gateway, sessions land on both nodes, and every status
 * is read back through gateway → NATS → owner node → session actor in exactly the product's shape.
 */
import { shardOf } from "@wacluster/domain/Shard"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Fixture, startCluster } from "../support/ClusterFixture.js"
import { call, field, text } from "../support/Gateway.js"

const SHARDS = 256
let fixture: Fixture
let gateway: string

const createTenant = async (name: string) => {
  const reply = await call(gateway, "POST", "/tenants", { bearer: fixture.cluster.adminToken, json: { name } })
  expect(reply.status).toBe(201)
  return { id: text(reply.body, "tenant", "id"), token: text(reply.body, "token") }
}

const createSession = async (token: string, name: string, city = "jakarta") => {
  const reply = await call(gateway, "POST", "/sessions", { bearer: token, json: { name, city } })
  expect(reply.status, JSON.stringify(reply.body)).toBe(201)
  return { id: text(reply.body, "session", "id"), key: text(reply.body, "apiKey", "key"), body: reply.body }
}

/** Waits until every shard has an owner and both nodes own some. */
const settled = async () => {
  for (let i = 0; i < 200; i++) {
    const owners = await fixture.owners(SHARDS)
    const nodes = new Set(owners.values())
    if (owners.size === SHARDS && nodes.size === 2) return owners
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error("shards never settled on both nodes")
}

beforeAll(async () => {
  fixture = await startCluster({ nodes: 2 })
  gateway = fixture.cluster.gatewayUrl
}, 120_000)

afterAll(async () => {
  const pids = [fixture?.cluster.gateway.pid, ...(fixture?.cluster.nodes.map((n) => n.pid) ?? [])]
  await fixture?.stop()
  // Nothing is left behind: every child process is gone.
  for (const pid of pids) {
    if (pid === undefined) continue
    expect(() => process.kill(pid, 0)).toThrow()
  }
}, 60_000)

describe("foundation, end to end", () => {
  it("serves /healthz on the gateway and on every node", async () => {
    const gw = await call(gateway, "GET", "/healthz")
    expect(gw.status).toBe(200)
    expect(field(gw.body, "service")).toBe("gateway")
    for (const node of fixture.cluster.nodes) {
      const reply = await call(node.httpUrl, "GET", "/healthz")
      expect(reply.status).toBe(200)
      expect(field(reply.body, "nodeId")).toBe(node.nodeId)
    }
  })

  it("lists the 164 cities without credentials", async () => {
    const reply = await call(gateway, "GET", "/cities")
    expect(reply.status).toBe(200)
    expect(field(reply.body, "count")).toBe(164)
    const asia = await call(gateway, "GET", "/cities?country=id")
    const names = (field(asia.body, "cities") as Array<unknown>).map((c) => field(c, "name"))
    expect(names).toEqual(expect.arrayContaining(["Medan", "Bandung", "Surabaya", "Jakarta"]))
  })

  it("creates tenants only with the admin token", async () => {
    const refused = await call(gateway, "POST", "/tenants", { bearer: "wrong", json: { name: "x" } })
    expect(refused.status).toBe(401)
    expect(field(refused.body, "error", "code")).toBe("unauthorized")
    const missing = await call(gateway, "POST", "/tenants", { json: { name: "x" } })
    expect(missing.status).toBe(401)
    const tenant = await createTenant("Acme")
    expect(tenant.id).toMatch(/^ten_/)
    expect(tenant.token).toMatch(/^wat_/)
  })

  it("places sessions on both nodes and reads each status through the gateway in the product's shape", async () => {
    const owners = await settled()
    const tenant = await createTenant("Placement")
    const byNode = new Map<string, Array<{ id: string; key: string }>>()
    for (let i = 0; i < 40 && byNode.size < 2; i++) {
      const session = await createSession(tenant.token, `Support-${i}`)
      const owner = owners.get(shardOf(session.id, SHARDS))
      expect(owner).toBeDefined()
      if (owner === undefined) continue
      byNode.set(owner, [...(byNode.get(owner) ?? []), session])
    }
    expect([...byNode.keys()].sort()).toEqual(["node-1", "node-2"])

    for (const sessions of byNode.values()) {
      for (const session of sessions) {
        const reply = await call(gateway, "GET", `/sessions/${session.id}/status`, { apiKey: session.key })
        expect(reply.status, JSON.stringify(reply.body)).toBe(200)
        expect(Object.keys(reply.body as object).sort()).toEqual(
          ["connectedAt", "health", "metrics", "sessionId", "status"]
        )
        expect(Object.keys(field(reply.body, "metrics") as object).sort()).toEqual(
          ["messagesReceived", "messagesSent", "uptime"]
        )
        expect(field(reply.body, "sessionId")).toBe(session.id)
        // No phone exists for the in-process WhatsApp yet: a new session waits for its QR scan.
        expect(field(reply.body, "status")).toBe("connecting")
        expect(field(reply.body, "health")).toBe("degraded")
        expect(field(reply.body, "connectedAt")).toBeNull()
        expect(field(reply.body, "metrics", "messagesSent")).toBe(0)
      }
    }
  })

  it("returns the session and its first key once, with the city resolved from its name", async () => {
    const tenant = await createTenant("Cities")
    const created = await createSession(tenant.token, "São Paulo desk", "São Paulo")
    expect(field(created.body, "session", "city")).toBe("sao-paulo")
    expect(field(created.body, "session", "name")).toBe("São Paulo desk")
    expect(created.key).toMatch(/^wak_[0-9A-Za-z]{43}$/)
    expect(field(created.body, "apiKey", "prefix")).toBe(created.key.slice(0, 12))

    const unknown = await call(gateway, "POST", "/sessions", {
      bearer: tenant.token,
      json: { name: "x", city: "Atlantis" }
    })
    expect(unknown.status).toBe(400)
    expect(field(unknown.body, "error", "code")).toBe("bad_request")
    expect(text(unknown.body, "error", "message")).toContain("GET /cities")
  })

  it("refuses a key of session A on session B exactly as if B did not exist", async () => {
    const tenant = await createTenant("Scoping")
    const other = await createTenant("Someone else")
    const a = await createSession(tenant.token, "A")
    const b = await createSession(tenant.token, "B")
    const foreign = await createSession(other.token, "Foreign")

    const onB = await call(gateway, "GET", `/sessions/${b.id}/status`, { apiKey: a.key })
    const onForeign = await call(gateway, "GET", `/sessions/${foreign.id}/status`, { apiKey: a.key })
    const missingId = "sess_00000000000000000000"
    const onMissing = await call(gateway, "GET", `/sessions/${missingId}/status`, { apiKey: a.key })
    for (const reply of [onB, onForeign, onMissing]) {
      expect(reply.status).toBe(404)
      expect(field(reply.body, "error", "code")).toBe("not_found")
    }
    // The answers differ only by the id the caller sent, so nothing tells an existing session from a missing one.
    const shape = (reply: typeof onB, id: string) => JSON.stringify(reply.body).replace(id, "<id>")
    expect(shape(onB, b.id)).toBe(shape(onMissing, missingId))
    expect(shape(onForeign, foreign.id)).toBe(shape(onMissing, missingId))

    const badKey = await call(gateway, "GET", `/sessions/${a.id}/status`, { apiKey: "wak_nope" })
    expect(badKey.status).toBe(401)
    const noKey = await call(gateway, "GET", `/sessions/${a.id}/status`)
    expect(noKey.status).toBe(401)
    // A tenant token is not a session key.
    const tenantToken = await call(gateway, "GET", `/sessions/${a.id}/status`, { apiKey: tenant.token })
    expect(tenantToken.status).toBe(401)
  })

  it("shows a tenant only its own sessions, page by page", async () => {
    const first = await createTenant("First")
    const second = await createTenant("Second")
    const mine = []
    for (let i = 0; i < 5; i++) mine.push((await createSession(first.token, `Mine-${i}`)).id)
    const theirs = await createSession(second.token, "Theirs")

    const seen: Array<string> = []
    let cursor: string | null = null
    do {
      const query: string = cursor === null ? "?limit=2" : `?limit=2&cursor=${encodeURIComponent(cursor)}`
      const page = await call(gateway, "GET", `/sessions${query}`, { bearer: first.token })
      expect(page.status).toBe(200)
      const sessions = field(page.body, "sessions") as Array<unknown>
      expect(sessions.length).toBeLessThanOrEqual(2)
      for (const session of sessions) seen.push(text(session, "id"))
      cursor = (field(page.body, "nextCursor") as string | null) ?? null
    } while (cursor !== null)
    expect(seen).toEqual(mine)
    expect(seen).not.toContain(theirs.id)

    const others = await call(gateway, "GET", "/sessions", { bearer: second.token })
    expect((field(others.body, "sessions") as Array<unknown>).map((s) => field(s, "id"))).toEqual([theirs.id])

    const badCursor = await call(gateway, "GET", "/sessions?cursor=garbage", { bearer: first.token })
    expect(badCursor.status).toBe(400)
    const noToken = await call(gateway, "GET", "/sessions")
    expect(noToken.status).toBe(401)
  })

  it("answers malformed requests with a 4xx JSON error and keeps serving", async () => {
    const tenant = await createTenant("Fuzz")
    const cases = [
      call(gateway, "POST", "/sessions", { bearer: tenant.token, raw: "{\"name\":" }),
      call(gateway, "POST", "/sessions", { bearer: tenant.token, json: { name: 3, city: "jakarta" } }),
      call(gateway, "POST", "/sessions", { bearer: tenant.token, json: { name: "", city: "jakarta" } }),
      call(gateway, "POST", "/sessions", { bearer: tenant.token, json: ["not", "an", "object"] }),
      call(gateway, "POST", "/sessions", {
        bearer: tenant.token,
        raw: JSON.stringify({ name: "x".repeat(2_000_000) })
      }),
      call(gateway, "GET", "/sessions/not-a-session/status", { apiKey: "wak_x" }),
      call(gateway, "GET", "/sessions?limit=0", { bearer: tenant.token }),
      call(gateway, "GET", "/sessions?limit=abc", { bearer: tenant.token }),
      call(gateway, "GET", "/no/such/route")
    ]
    for (const reply of await Promise.all(cases)) {
      expect(reply.status, JSON.stringify(reply.body).slice(0, 200)).toBeGreaterThanOrEqual(400)
      expect(reply.status).toBeLessThan(500)
      expect(typeof field(reply.body, "error", "code")).toBe("string")
      expect(typeof field(reply.body, "error", "message")).toBe("string")
    }
    expect((await call(gateway, "GET", "/healthz")).status).toBe(200)
  })
})
