/**
 * WhatsApp for real, end to end: real Baileys in a real node process talks to wa-sim (the simulated WhatsApp)
 * through a real SOCKS5 proxy process, and everything is observed through the gateway, the simulator's phone
 * controls, the proxy's log and Postgres. Every session of this cluster goes through the proxy.
 */
import { SqlClient } from "@effect/sql"
import type { SessionId } from "@wacluster/domain/Ids"
import { SendText } from "@wacluster/domain/Protocol"
import * as Database from "@wacluster/store/Database"
import { Effect, Exit, Layer, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Fixture, startCluster } from "../support/ClusterFixture.js"
import { call, field, text } from "../support/Gateway.js"
import * as ProxyServer from "../support/ProxyServer.js"
import { eventually, sleep } from "../support/Sessions.js"

const PARK_LIMIT = 4
let fixture: Fixture
let gateway: string
let tenantToken: string
let proxy: ProxyServer.ProxyServerHandle
const scope = Effect.runSync(Scope.make())
const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Scope.extend(effect, scope))
let sql: SqlClient.SqlClient

interface Created {
  readonly id: SessionId
  readonly key: string
}

const createSession = async (name: string): Promise<Created> => {
  const reply = await call(gateway, "POST", "/sessions", { bearer: tenantToken, json: { name, city: "sao-paulo" } })
  expect(reply.status, JSON.stringify(reply.body)).toBe(201)
  return { id: text(reply.body, "session", "id") as SessionId, key: text(reply.body, "apiKey", "key") }
}

const status = async (session: Created) => {
  const reply = await call(gateway, "GET", `/sessions/${session.id}/status`, { apiKey: session.key })
  expect(reply.status, JSON.stringify(reply.body)).toBe(200)
  return reply.body
}

/** Polls the status; a 503 while a session moves between nodes is part of waiting, not a failure. */
const statusIs = (session: Created, wanted: string) =>
  eventually(
    `${session.id} ${wanted}`,
    () => call(gateway, "GET", `/sessions/${session.id}/status`, { apiKey: session.key }),
    (reply) => {
      if (reply.status !== 200 && reply.status !== 503) {
        throw new Error(
          `status ${reply.status}: ${JSON.stringify(reply.body)}`
        )
      }
      return reply.status === 200 && field(reply.body, "status") === wanted
    }
  ).then((reply) => reply.body)

/** The session as listed to its tenant: the reason is there. */
const listed = async (session: Created) => {
  const reply = await call(gateway, "GET", "/sessions?limit=500", { bearer: tenantToken })
  const sessions = field(reply.body, "sessions") as ReadonlyArray<unknown>
  return sessions.find((entry) => field(entry, "id") === session.id)
}

const reasonIs = (session: Created, status: string, reason: string) =>
  eventually(
    `${session.id} ${status}/${reason}`,
    () => listed(session),
    (entry) => field(entry, "status") === status && field(entry, "reason") === reason
  )

const rawQr = (session: Created) =>
  eventually(
    `a QR code for ${session.id}`,
    () => call(gateway, "GET", `/sessions/${session.id}/qr?format=raw`, { apiKey: session.key }),
    (reply) => reply.status === 200
  ).then((reply) => text(reply.body, "qr"))

/** Creates a session and links it by scanning its QR code with the simulated phone. */
const linkedSession = async (name: string, phone: string) => {
  const session = await createSession(name)
  const jid = await fixture.sim.scan(await rawQr(session), phone)
  await statusIs(session, "connected")
  return { ...session, jid }
}

const query = <A>(effect: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>) =>
  Effect.runPromise(Effect.orDie(effect(sql)))

const proxyStickyOf = async (sessionId: SessionId) =>
  (await query((sql) =>
    sql<{ proxySticky: string | null }>`SELECT proxy_sticky FROM session_runtime
    WHERE session_id = ${sessionId}`
  ))[0]?.proxySticky ?? null

beforeAll(async () => {
  proxy = await run(ProxyServer.start({ kind: "socks5" }))
  fixture = await startCluster({
    nodes: 1,
    env: {
      PROXY_URL_TEMPLATE:
        `socks5://user-country-{country}-city-{city}-session-{sticky}:{password}@127.0.0.1:${proxy.port}`,
      PROXY_PASSWORD: "s3cret/pass",
      WA_QR_TIMEOUT: "2 seconds",
      SESSION_RESTART_LIMIT: String(PARK_LIMIT),
      SESSION_PARK_FOR: "20 seconds"
    }
  })
  gateway = fixture.cluster.gatewayUrl
  const tenant = await call(gateway, "POST", "/tenants", { bearer: fixture.cluster.adminToken, json: { name: "wa" } })
  tenantToken = text(tenant.body, "token")
  const context = await run(Layer.build(Database.layerFromUrl(fixture.cluster.databaseUrl, { maxConnections: 2 })))
  sql = await Effect.runPromise(Effect.provide(SqlClient.SqlClient, context))
}, 180_000)

afterAll(async () => {
  await fixture?.stop()
  await Effect.runPromise(Scope.close(scope, Exit.void))
}, 60_000)

describe("WhatsApp through wa-sim, end to end", () => {
  it("links by QR and reports connected in exactly the product's shape, through the city's proxy", async () => {
    const session = await linkedSession("Support-SaoPaulo-Prod", "5511900000001")
    const body = await status(session)
    expect(Object.keys(body as object).sort()).toEqual(["connectedAt", "health", "metrics", "sessionId", "status"])
    expect(body).toMatchObject({
      sessionId: session.id,
      status: "connected",
      health: "healthy",
      metrics: { messagesSent: 0, messagesReceived: 0 }
    })
    expect(Date.parse(text(body, "connectedAt"))).toBeGreaterThan(Date.now() - 60_000)
    // Linked: no QR code any more.
    const qr = await call(gateway, "GET", `/sessions/${session.id}/qr?format=raw`, { apiKey: session.key })
    expect(qr.status).toBe(409)
    // The proxy saw São Paulo, this session's sticky token and the password.
    const sticky = await proxyStickyOf(session.id)
    expect(sticky).toMatch(/^[0-9A-Za-z]{12}$/)
    const seen = await Effect.runPromise(proxy.seen)
    expect(seen).toContainEqual({
      username: `user-country-br-city-saopaulo-session-${sticky}`,
      password: "s3cret/pass"
    })
  })

  it("stores inbound texts in history and counts them; sends texts the contact receives, with receipts", async () => {
    const session = await linkedSession("Inbox", "5511900000002")
    await fixture.sim.message(session.jid, "5511988887777", "olá, tudo bem?")
    await eventually(
      "the text counted",
      () => status(session),
      (body) => field(body, "metrics", "messagesReceived") === 1
    )
    const inbound = await query((sql) =>
      sql<{ direction: string; remoteJid: string; body: unknown }>`SELECT direction, remote_jid, body FROM messages
        WHERE session_id = ${session.id}`
    )
    expect(inbound).toHaveLength(1)
    expect(inbound[0]).toMatchObject({ direction: "inbound", body: { text: "olá, tudo bem?" } })
    expect(inbound[0]?.remoteJid).toContain("5511988887777")

    const exit = await fixture.command(
      new SendText({ sessionId: session.id, to: "+5511988887777", text: "tudo ótimo" })
    )
    expect(Exit.isSuccess(exit), String(exit)).toBe(true)
    const received = await eventually(
      "the contact got it",
      () => fixture.sim.sent(session.jid),
      (sent) => sent.length === 1
    )
    expect(received[0]?.text).toBe("tudo ótimo")
    await eventually("the send counted", () => status(session), (body) => field(body, "metrics", "messagesSent") === 1)

    const statusOf = () =>
      query((sql) =>
        sql<{ status: string }>`SELECT status FROM messages WHERE session_id = ${session.id} AND direction = 'outbound'`
      ).then((rows) => rows[0]?.status)
    expect(await statusOf()).toBe("sent")
    await fixture.sim.receipt(session.jid, received[0]?.id ?? "", "delivered")
    await eventually("delivered", statusOf, (value) => value === "delivered")
    await fixture.sim.receipt(session.jid, received[0]?.id ?? "", "read")
    await eventually("read", statusOf, (value) => value === "read")
  })

  it("links by phone number with a pairing code instead of a QR scan", async () => {
    const session = await createSession("Paired-By-Code")
    await rawQr(session)
    const requested = await call(gateway, "POST", `/sessions/${session.id}/pairing-code`, {
      bearer: tenantToken,
      json: { phoneNumber: "+55 11 90000-0009" }
    })
    expect(requested.status, JSON.stringify(requested.body)).toBe(200)
    expect(requested.body).toMatchObject({ sessionId: session.id, phoneNumber: "5511900000009" })
    const code = text(requested.body, "pairingCode")
    expect(code).toMatch(/^[0-9A-Z]{8}$/)
    const jid = await fixture.sim.enterCode("5511900000009", code)
    expect(jid).toMatch(/^5511900000009:\d+@s\.whatsapp\.net$/)
    await statusIs(session, "connected")
    // Linked now: no second code.
    const again = await call(gateway, "POST", `/sessions/${session.id}/pairing-code`, {
      apiKey: session.key,
      json: { phoneNumber: "5511900000009" }
    })
    expect(again.status).toBe(409)
    expect(text(again.body, "error", "message")).toContain("already linked")
    const bad = await call(gateway, "POST", `/sessions/${session.id}/pairing-code`, {
      apiKey: session.key,
      json: { phoneNumber: "not a number" }
    })
    expect(bad.status).toBe(400)
    expect(text(bad.body, "error", "message")).toContain("country code")
  })

  it("refuses a send while not connected", async () => {
    const session = await createSession("Unlinked")
    await rawQr(session)
    const exit = await fixture.command(new SendText({ sessionId: session.id, to: "5511988887777", text: "hi" }))
    expect(String(exit)).toContain("NotConnected")
  })

  it("expires when no QR code is scanned in time", async () => {
    const session = await createSession("Never-Scanned")
    await statusIs(session, "expired")
    // The list reads Postgres, which the actor writes right after its status changed.
    await reasonIs(session, "expired", "qr_timeout")
    expect(field(await status(session), "health")).toBe("unhealthy")
  })

  it("logged out on the phone → disconnected/logged_out; Reconnect → a new QR code, and linking again works", async () => {
    const session = await linkedSession("Logged-Out", "5511900000003")
    await fixture.sim.logout(session.jid)
    await reasonIs(session, "disconnected", "logged_out")
    const reconnect = await call(gateway, "POST", `/sessions/${session.id}/reconnect`, { apiKey: session.key })
    expect(reconnect.status).toBe(202)
    const qr = await rawQr(session)
    await fixture.sim.scan(qr, "5511900000003")
    await statusIs(session, "connected")
  })

  it("a conflicting login makes the session stand down: disconnected/conflict, no reconnect fight", async () => {
    const session = await linkedSession("Conflicted", "5511900000004")
    const before = await fixture.sim.stats()
    await fixture.sim.conflict(session.jid)
    await reasonIs(session, "disconnected", "conflict")
    await sleep(3_000)
    expect(await fixture.sim.live(session.jid)).toBe(false)
    expect((await fixture.sim.stats()).overlaps).toBe(before.overlaps)
  })

  it("a socket dropped again and again is restarted, then parked as disconnected/failing", async () => {
    const session = await linkedSession("Flaky", "5511900000005")
    for (let drop = 1; drop <= PARK_LIMIT; drop++) {
      await fixture.sim.drop(session.jid)
      await eventually("back after a drop", () => fixture.sim.live(session.jid), (live) => live, 20_000)
    }
    await fixture.sim.drop(session.jid)
    await reasonIs(session, "disconnected", "failing")
    await sleep(2_000)
    expect(await fixture.sim.live(session.jid)).toBe(false)
  }, 90_000)

  it("proxy down → proxy_unreachable and a new sticky exit; proxy back → connected again; all in /health", async () => {
    const session = await linkedSession("Proxied", "5511900000006")
    const health = async () => {
      const reply = await call(gateway, "GET", `/sessions/${session.id}/health`, { bearer: tenantToken })
      expect(reply.status, JSON.stringify(reply.body)).toBe(200)
      return reply.body
    }
    const sticky = await proxyStickyOf(session.id)
    const before = await health()
    expect(before).toMatchObject({
      sessionId: session.id,
      connection: { status: "connected", reason: null, indicator: "green", phoneNumber: "5511900000006" },
      proxy: { sticky, healthy: true, failures: 0, rotations: 0 }
    })
    // The password never leaves the node.
    expect(text(before, "proxy", "url")).not.toContain("s3cret")
    expect(text(before, "proxy", "url")).toContain("city-saopaulo")

    await Effect.runPromise(proxy.stop)
    await fixture.sim.drop(session.jid)
    await reasonIs(session, "disconnected", "proxy_unreachable")
    const down = await health()
    expect(down).toMatchObject({ connection: { indicator: "red", reason: "proxy_unreachable" } })
    expect(field(down, "proxy", "failures")).toBeGreaterThanOrEqual(1)
    expect(field(down, "proxy", "lastError")).toEqual(expect.any(String))

    await Effect.runPromise(proxy.start)
    await statusIs(session, "connected")
    const rotated = await proxyStickyOf(session.id)
    expect(rotated).not.toBe(sticky)
    expect(await health()).toMatchObject({
      connection: { indicator: "green" },
      proxy: { sticky: rotated, healthy: true, rotations: expect.any(Number) }
    })
    const seen = await Effect.runPromise(proxy.seen)
    expect(seen.map((credential) => credential.username)).toContain(`user-country-br-city-saopaulo-session-${rotated}`)
  }, 90_000)

  it("a restarted node resumes its linked sessions from Postgres without a QR, never two sockets at once", async () => {
    const session = await linkedSession("Survivor", "5511900000007")
    const devicesBefore = (await fixture.sim.stats()).devices
    const overlapsBefore = (await fixture.sim.stats()).overlaps
    await Effect.runPromise(fixture.cluster.stopNode("node-1"))
    await Effect.runPromise(fixture.cluster.addNode("node-1"))
    await statusIs(session, "connected")
    const stats = await fixture.sim.stats()
    expect(stats.devices).toBe(devicesBefore)
    expect(stats.overlaps).toBe(overlapsBefore)
    expect(await fixture.sim.live(session.jid)).toBe(true)
  }, 90_000)

  it("never had two live sockets for one device during this whole file", async () => {
    expect((await fixture.sim.stats()).overlaps).toBe(0)
  })
})
