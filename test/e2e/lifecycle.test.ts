/**
 * A session's lifecycle through the gateway, on real processes (nodes with real Baileys against wa-sim, Postgres,
 * NATS): read it, rename it (its city is permanent), stop it (it stays stopped across a failover and resumes without
 * a QR code), delete it (the device is unlinked from the phone, its keys stop working, every route answers 404).
 */
import { shardOf } from "@wacluster/domain/Shard"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Fixture, startCluster } from "../support/ClusterFixture.js"
import { call, createTenant, field, text } from "../support/Gateway.js"
import { eventually, sessionsOf, sleep, type TestSession } from "../support/Sessions.js"

let fixture: Fixture
let gateway: string
let tenantToken: string
let otherTenantToken: string
let sessions: ReturnType<typeof sessionsOf>

beforeAll(async () => {
  fixture = await startCluster({ nodes: 2, env: { SESSION_SEND_INTERVAL: "50 millis" } })
  gateway = fixture.cluster.gatewayUrl
  tenantToken = (await createTenant(fixture.cluster, "life")).token
  otherTenantToken = (await createTenant(fixture.cluster, "other")).token
  sessions = sessionsOf(gateway, tenantToken, fixture.sim)
}, 180_000)

afterAll(async () => {
  await fixture?.stop()
}, 60_000)

const get = (session: TestSession, credentials: { apiKey: string } | { bearer: string } = { apiKey: session.key }) =>
  call(gateway, "GET", `/sessions/${session.id}`, credentials)

const device = async (jid: string) => (await fixture.sim.devices()).find((entry) => entry.jid === jid)

describe("GET and PATCH /sessions/{sessionId}", () => {
  it("shows the session to its key and its tenant, and to nobody else", async () => {
    const session = await sessions.create("Detail", "São Paulo")
    const other = await sessions.create("Someone-Else")
    const byKey = await get(session)
    expect(byKey.status, JSON.stringify(byKey.body)).toBe(200)
    expect(byKey.body).toMatchObject({
      id: session.id,
      name: "Detail",
      city: "sao-paulo",
      phoneNumber: null,
      connectedAt: null,
      lastActivityAt: null,
      messageQueue: { pending: 0, oldestQueuedAt: null, oldestAgeSeconds: null }
    })
    expect(["connecting", "expired"]).toContain(field(byKey.body, "status"))
    expect(Date.parse(text(byKey.body, "createdAt"))).toBeGreaterThan(Date.now() - 120_000)
    const byTenant = await get(session, { bearer: tenantToken })
    expect(byTenant.status).toBe(200)
    expect(field(byTenant.body, "id")).toBe(session.id)

    for (const credentials of [{ apiKey: other.key }, { bearer: otherTenantToken }]) {
      const refused = await get(session, credentials)
      expect(refused.status, JSON.stringify(credentials)).toBe(404)
      expect(field(refused.body, "error", "code")).toBe("not_found")
    }
    const unknown = await call(gateway, "GET", "/sessions/sess_00000000000000000000", { bearer: tenantToken })
    expect(unknown.status).toBe(404)
    const malformed = await call(gateway, "GET", "/sessions/not-a-session", { bearer: tenantToken })
    expect(malformed.status).toBe(400)
    expect((await call(gateway, "GET", `/sessions/${session.id}`, {})).status).toBe(401)
  })

  it("renames; the city is permanent and asking for another is a 400 that says why", async () => {
    const session = await sessions.create("Old-Name", "jakarta")
    const renamed = await call(gateway, "PATCH", `/sessions/${session.id}`, {
      apiKey: session.key,
      json: { name: "Support-Jakarta-Prod" }
    })
    expect(renamed.status, JSON.stringify(renamed.body)).toBe(200)
    expect(renamed.body).toMatchObject({ id: session.id, name: "Support-Jakarta-Prod", city: "jakarta" })
    expect(field((await get(session, { bearer: tenantToken })).body, "name")).toBe("Support-Jakarta-Prod")

    const moved = await call(gateway, "PATCH", `/sessions/${session.id}`, {
      bearer: tenantToken,
      json: { name: "Elsewhere", city: "london" }
    })
    expect(moved.status).toBe(400)
    expect(field(moved.body, "error", "code")).toBe("bad_request")
    expect(text(moved.body, "error", "message")).toContain("permanent")
    expect(text(moved.body, "error", "message")).toContain("create a new session")
    expect(field(moved.body, "error", "details")).toMatchObject({ field: "city", city: "jakarta" })
    // Nothing changed, the name included.
    expect((await get(session)).body).toMatchObject({ name: "Support-Jakarta-Prod", city: "jakarta" })

    // Its own city, by name or slug, is no change.
    const same = await call(gateway, "PATCH", `/sessions/${session.id}`, {
      apiKey: session.key,
      json: { city: "Jakarta", name: "Jakarta-2" }
    })
    expect(same.status, JSON.stringify(same.body)).toBe(200)
    expect(field(same.body, "name")).toBe("Jakarta-2")

    for (const body of [{ name: "" }, { name: "x".repeat(101) }, { name: 42 }, { city: 7 }]) {
      const bad = await call(gateway, "PATCH", `/sessions/${session.id}`, { apiKey: session.key, json: body })
      expect(bad.status, JSON.stringify(body)).toBe(400)
    }
    const foreign = await call(gateway, "PATCH", `/sessions/${session.id}`, {
      bearer: otherTenantToken,
      json: { name: "Hijacked" }
    })
    expect(foreign.status).toBe(404)
    expect(field((await get(session)).body, "name")).toBe("Jakarta-2")
  })
})

describe("POST /sessions/{sessionId}/stop", () => {
  it("closes the connection and keeps the session stopped, across a failover, until a reconnect resumes it", async () => {
    const session = await sessions.link("Stoppable", "4915100002001")
    const linked = await get(session)
    expect(linked.body).toMatchObject({ status: "connected", reason: null, phoneNumber: "4915100002001" })
    expect(field(linked.body, "connectedAt")).not.toBeNull()

    const stopped = await call(gateway, "POST", `/sessions/${session.id}/stop`, { apiKey: session.key })
    expect(stopped.status, JSON.stringify(stopped.body)).toBe(202)
    expect(stopped.body).toMatchObject({ sessionId: session.id, status: "disconnected", connectedAt: null })
    expect(await fixture.sim.live(session.jid)).toBe(false)
    expect((await get(session)).body).toMatchObject({ status: "disconnected", reason: "stopped" })
    // Stopping again is no error.
    expect((await call(gateway, "POST", `/sessions/${session.id}/stop`, { apiKey: session.key })).status).toBe(202)

    // Texts wait while it is stopped, visible on the session.
    const queued = await call(gateway, "POST", `/sessions/${session.id}/messages`, {
      apiKey: session.key,
      json: { to: "+4915199990000", text: "after the pause" }
    })
    expect(queued.status).toBe(202)
    expect(field((await get(session)).body, "messageQueue", "pending")).toBe(1)

    // Its node dies: the next owner keeps it stopped (no socket, still linked on the phone).
    const shard = shardOf(session.id, 256)
    const owner = (await fixture.owners(256)).get(shard)
    await Effect.runPromise(fixture.cluster.stopNode(owner ?? "", "SIGKILL"))
    await eventually(
      "the shard taken by the surviving node",
      () => fixture.owners(256),
      (owners) => owners.get(shard) !== undefined && owners.get(shard) !== owner,
      60_000
    )
    const afterFailover = await eventually(
      "the session read from the next owner",
      () => get(session),
      (reply) => reply.status === 200 && field(reply.body, "reason") === "stopped",
      60_000
    )
    expect(afterFailover.body).toMatchObject({ status: "disconnected", reason: "stopped" })
    await sleep(3_000)
    expect(await fixture.sim.live(session.jid)).toBe(false)
    expect(await fixture.sim.sent(session.jid)).toHaveLength(0)
    expect((await device(session.jid))?.jid).toBe(session.jid)

    // Reconnect resumes it with its saved credentials: no QR code, and the queued text goes out.
    const resumed = await call(gateway, "POST", `/sessions/${session.id}/reconnect`, { apiKey: session.key })
    expect(resumed.status, JSON.stringify(resumed.body)).toBe(202)
    await sessions.statusIs(session, "connected")
    const sent = await eventually(
      "the queued text sent",
      () => fixture.sim.sent(session.jid),
      (all) => all.length === 1
    )
    expect(sent[0]?.text).toBe("after the pause")
    // WhatsApp has the text a moment before the session records it as sent.
    await eventually(
      "the send recorded as activity",
      () => get(session),
      (reply) => field(reply.body, "lastActivityAt") !== null
    )
  })
})

describe("DELETE /sessions/{sessionId}", () => {
  it("unlinks a connected session's device from the phone, and then nothing of it answers", async () => {
    const session = await sessions.link("Doomed", "4915100002002")
    const deleted = await call(gateway, "DELETE", `/sessions/${session.id}`, { bearer: tenantToken })
    expect(deleted.status, JSON.stringify(deleted.body)).toBe(200)
    expect(deleted.body).toEqual({ sessionId: session.id, deleted: true, deviceUnlinked: true, detail: null })
    await eventually("the phone no longer lists the device", () => device(session.jid), (entry) => entry === undefined)

    // Its key is revoked everywhere within a second; the tenant sees 404 on every route of it.
    await sleep(1_100)
    for (const path of ["", "/status", "/health", "/qr?format=raw"]) {
      const byKey = await call(gateway, "GET", `/sessions/${session.id}${path}`, { apiKey: session.key })
      expect(byKey.status, path).toBe(401)
      const byTenant = await call(gateway, "GET", `/sessions/${session.id}${path}`, { bearer: tenantToken })
      expect(byTenant.status, path).toBe(404)
    }
    expect((await call(gateway, "DELETE", `/sessions/${session.id}`, { bearer: tenantToken })).status).toBe(404)
    const listed = await call(gateway, "GET", "/sessions?limit=500", { bearer: tenantToken })
    expect(JSON.stringify(listed.body)).not.toContain(session.id)
    // Nobody logs in as it again.
    await sleep(2_000)
    expect(await fixture.sim.live(session.jid)).toBe(false)
  })

  it("unlinks a stopped session's device by logging in once with its saved credentials", async () => {
    const session = await sessions.link("Stopped-Then-Deleted", "4915100002003")
    expect((await call(gateway, "POST", `/sessions/${session.id}/stop`, { apiKey: session.key })).status).toBe(202)
    const deleted = await call(gateway, "DELETE", `/sessions/${session.id}`, { bearer: tenantToken })
    expect(deleted.status, JSON.stringify(deleted.body)).toBe(200)
    expect(deleted.body).toMatchObject({ deleted: true, deviceUnlinked: true })
    await eventually("the phone no longer lists the device", () => device(session.jid), (entry) => entry === undefined)
    expect((await get(session, { bearer: tenantToken })).status).toBe(404)
  })

  it("deletes a session that was never linked, and says there was no device to unlink", async () => {
    const session = await sessions.create("Never-Linked")
    await sessions.rawQr(session)
    // Only the tenant deletes a session: its own key cannot.
    const byKey = await call(gateway, "DELETE", `/sessions/${session.id}`, { apiKey: session.key })
    expect(byKey.status).toBe(401)
    expect((await get(session)).status).toBe(200)
    const deleted = await call(gateway, "DELETE", `/sessions/${session.id}`, { bearer: tenantToken })
    expect(deleted.status, JSON.stringify(deleted.body)).toBe(200)
    expect(deleted.body).toMatchObject({ deleted: true, deviceUnlinked: false })
    expect(text(deleted.body, "detail")).toContain("not linked")
    expect((await get(session, { bearer: tenantToken })).status).toBe(404)
    // Another tenant cannot delete what is not theirs.
    const kept = await sessions.create("Kept")
    const foreign = await call(gateway, "DELETE", `/sessions/${kept.id}`, { bearer: otherTenantToken })
    expect(foreign.status).toBe(404)
    expect((await get(kept)).status).toBe(200)
  })
})

describe("API keys: /sessions/{sessionId}/keys", () => {
  const keysOf = (session: TestSession, token = tenantToken) =>
    call(gateway, "GET", `/sessions/${session.id}/keys`, { bearer: token })

  it("issues a key shown once, lists keys without secrets, and records when each was last used", async () => {
    const session = await sessions.create("Keyring")
    const issued = await call(gateway, "POST", `/sessions/${session.id}/keys`, {
      bearer: tenantToken,
      json: { name: "  crm-integration ", rateLimit: { requestsPerMinute: 600 } }
    })
    expect(issued.status, JSON.stringify(issued.body)).toBe(201)
    const secret = text(issued.body, "key")
    expect(secret).toMatch(/^wak_[0-9A-Za-z]{43}$/)
    expect(issued.body).toMatchObject({
      name: "crm-integration",
      prefix: secret.slice(0, 12),
      rateLimit: { requestsPerMinute: 600, messagesPerHour: null }
    })
    expect(text(issued.body, "id")).toMatch(/^key_/)

    // The new key works like the first one.
    const viaNewKey = await call(gateway, "GET", `/sessions/${session.id}/status`, { apiKey: secret })
    expect(viaNewKey.status).toBe(200)
    const listed = await eventually(
      "the new key's use recorded",
      () => keysOf(session),
      (reply) => {
        const keys = field(reply.body, "keys") as ReadonlyArray<unknown>
        return keys.some((k) => field(k, "id") === field(issued.body, "id") && field(k, "lastUsedAt") !== null)
      }
    )
    const keys = field(listed.body, "keys") as ReadonlyArray<unknown>
    expect(keys.map((k) => field(k, "name"))).toEqual(["default", "crm-integration"])
    expect(JSON.stringify(listed.body)).not.toContain(secret)
    expect(JSON.stringify(listed.body)).not.toContain(session.key)
    for (const key of keys) {
      expect(Object.keys(key as object).sort()).toEqual(
        ["createdAt", "id", "lastUsedAt", "name", "prefix", "rateLimit"]
      )
    }
  })

  it("revokes a key: refused within a second, gone from the list, the other keys unaffected", async () => {
    const session = await sessions.create("Revocable")
    const issued = await call(gateway, "POST", `/sessions/${session.id}/keys`, {
      bearer: tenantToken,
      json: { name: "temporary" }
    })
    const keyId = text(issued.body, "id")
    const secret = text(issued.body, "key")
    expect((await call(gateway, "GET", `/sessions/${session.id}/status`, { apiKey: secret })).status).toBe(200)

    const revoked = await call(gateway, "DELETE", `/sessions/${session.id}/keys/${keyId}`, { bearer: tenantToken })
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(200)
    expect(field(revoked.body, "id")).toBe(keyId)
    const revokedAt = Date.now()
    const refused = await eventually(
      "the revoked key refused",
      () => call(gateway, "GET", `/sessions/${session.id}/status`, { apiKey: secret }),
      (reply) => reply.status === 401,
      5_000
    )
    expect(Date.now() - revokedAt).toBeLessThan(1_500)
    expect(field(refused.body, "error", "code")).toBe("unauthorized")
    expect((await call(gateway, "GET", `/sessions/${session.id}/status`, { apiKey: session.key })).status).toBe(200)
    const listed = field((await keysOf(session)).body, "keys") as ReadonlyArray<unknown>
    expect(listed.map((k) => field(k, "id"))).not.toContain(keyId)
    // Again: the same answer.
    const again = await call(gateway, "DELETE", `/sessions/${session.id}/keys/${keyId}`, { bearer: tenantToken })
    expect(again.status).toBe(200)
    expect(field(again.body, "revokedAt")).toBe(field(revoked.body, "revokedAt"))
  })

  it("keys are the tenant's to manage: a session key cannot, another tenant sees 404, bad input is a 400", async () => {
    const session = await sessions.create("Guarded")
    const other = await sessions.create("Neighbour")
    const byKey = await call(gateway, "POST", `/sessions/${session.id}/keys`, {
      apiKey: session.key,
      json: { name: "escalation" }
    })
    expect(byKey.status).toBe(401)
    expect((await call(gateway, "GET", `/sessions/${session.id}/keys`, { apiKey: session.key })).status).toBe(401)
    expect((await keysOf(session, otherTenantToken)).status).toBe(404)
    const foreign = await call(gateway, "POST", `/sessions/${session.id}/keys`, {
      bearer: otherTenantToken,
      json: { name: "x" }
    })
    expect(foreign.status).toBe(404)

    // Another session's key id through this session's path: not found, and still working.
    const otherKeyId = field(field((await keysOf(other)).body, "keys"), 0, "id")
    const crossed = await call(gateway, "DELETE", `/sessions/${session.id}/keys/${String(otherKeyId)}`, {
      bearer: tenantToken
    })
    expect(crossed.status).toBe(404)
    expect((await call(gateway, "GET", `/sessions/${other.id}/status`, { apiKey: other.key })).status).toBe(200)
    const unknown = await call(gateway, "DELETE", `/sessions/${session.id}/keys/key_00000000000000000000`, {
      bearer: tenantToken
    })
    expect(unknown.status).toBe(404)
    const malformed = await call(gateway, "DELETE", `/sessions/${session.id}/keys/nope`, { bearer: tenantToken })
    expect(malformed.status).toBe(400)

    for (
      const body of [
        {},
        { name: "" },
        { name: "   " },
        { name: "x".repeat(101) },
        { name: "ok", rateLimit: { requestsPerMinute: 0 } },
        { name: "ok", rateLimit: { messagesPerHour: -5 } },
        { name: "ok", rateLimit: { requestsPerMinute: 1.5 } },
        { name: "ok", rateLimit: "fast" }
      ]
    ) {
      const bad = await call(gateway, "POST", `/sessions/${session.id}/keys`, { bearer: tenantToken, json: body })
      expect(bad.status, JSON.stringify(body)).toBe(400)
      expect(field(bad.body, "error", "code")).toBe("bad_request")
    }
    const keys = field((await keysOf(session)).body, "keys") as ReadonlyArray<unknown>
    expect(keys).toHaveLength(1)
  })
})
