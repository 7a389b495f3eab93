/**
 * Sending through the gateway's durable queue, end to end: real nodes with real Baileys against wa-sim, Postgres and
 * NATS. A text is accepted (202, queued) whether or not the session is connected, waits in Postgres (visible in the
 * health panel), goes out in order once the session is connected, is repeated safely under an Idempotency-Key, and
 * survives the SIGKILL of the node that held it.
 */
import { shardOf } from "@wacluster/domain/Shard"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Fixture, startCluster } from "../support/ClusterFixture.js"
import { call, createTenant, field, text } from "../support/Gateway.js"
import { eventually, sessionsOf, type TestSession } from "../support/Sessions.js"

let fixture: Fixture
let gateway: string
let tenantToken: string
let sessions: ReturnType<typeof sessionsOf>

beforeAll(async () => {
  fixture = await startCluster({ nodes: 3, env: { SESSION_SEND_INTERVAL: "200 millis" } })
  gateway = fixture.cluster.gatewayUrl
  tenantToken = (await createTenant(fixture.cluster, "msg")).token
  sessions = sessionsOf(gateway, tenantToken, fixture.sim)
}, 180_000)

afterAll(async () => {
  await fixture?.stop()
}, 60_000)

const send = (session: TestSession, body: unknown, idempotencyKey?: string) =>
  call(gateway, "POST", `/sessions/${session.id}/messages`, {
    apiKey: session.key,
    json: body,
    ...(idempotencyKey === undefined ? {} : { headers: { "idempotency-key": idempotencyKey } })
  })

const health = async (session: TestSession) => {
  const reply = await call(gateway, "GET", `/sessions/${session.id}/health`, { apiKey: session.key })
  expect(reply.status, JSON.stringify(reply.body)).toBe(200)
  return reply.body
}

/** What `jid`'s contacts got, each message once: a text sent again under its WhatsApp id is one message to them. */
const onceEach = <A extends { readonly id: string }>(sent: ReadonlyArray<A>) =>
  sent.filter((message, index) => sent.findIndex((other) => other.id === message.id) === index)

const received = (jid: string, count: number) =>
  eventually(
    `${count} texts received by ${jid}'s contacts`,
    () => fixture.sim.sent(jid).then(onceEach),
    (sent) => sent.length >= count
  )

describe("POST /sessions/{sessionId}/messages", () => {
  it("refuses bad input with a clear 400 and another session's key with 404, queueing nothing", async () => {
    const session = await sessions.create("Validation")
    const other = await sessions.create("Other")
    const cases: ReadonlyArray<readonly [unknown, string]> = [
      [{ to: "12", text: "hi" }, "country code"],
      [{ to: "+62 812-3456-7890@x", text: "hi" }, "country code"],
      [{ to: "group@g.us", text: "hi" }, "country code"],
      [{ to: "+6281234567890", text: "   " }, "must not be empty"],
      [{ to: "+6281234567890", text: "x".repeat(65_537) }, "at most 65536"],
      [{ to: "+6281234567890" }, "text"],
      [{ text: "hi" }, "to"],
      [{ to: 6281234567890, text: "hi" }, "to"]
    ]
    for (const [body, says] of cases) {
      const reply = await send(session, body)
      expect(reply.status, JSON.stringify(reply.body)).toBe(400)
      expect(field(reply.body, "error", "code")).toBe("bad_request")
      expect(JSON.stringify(reply.body)).toContain(says)
    }
    const tooLongKey = await send(session, { to: "+6281234567890", text: "hi" }, "k".repeat(256))
    expect(tooLongKey.status).toBe(400)
    const wrongKey = await call(gateway, "POST", `/sessions/${session.id}/messages`, {
      apiKey: other.key,
      json: { to: "+6281234567890", text: "hi" }
    })
    expect(wrongKey.status).toBe(404)
    expect(field(wrongKey.body, "error", "code")).toBe("not_found")
    expect(field(await health(session), "messageQueue", "pending")).toBe(0)
  })

  it("queues while not linked (visible in health), then sends in order once connected; a repeat is answered once", async () => {
    const session = await sessions.create("Queue-First")
    const accepted = []
    for (const [i, word] of ["um", "dois", "três"].entries()) {
      const reply = await send(session, { to: "+55 11 98888-000" + String(i), text: word }, `order-${i}`)
      expect(reply.status, JSON.stringify(reply.body)).toBe(202)
      expect(reply.body).toMatchObject({ status: "queued" })
      expect(text(reply.body, "messageId")).toMatch(/^msg_/)
      accepted.push(reply.body)
    }
    // The same request again: the first answer, and nothing more queued.
    const again = await send(session, { to: "+5511988880000", text: "um" }, "order-0")
    expect(again.status).toBe(202)
    expect(again.body).toEqual(accepted[0])
    const waiting = await health(session)
    expect(field(waiting, "messageQueue", "pending")).toBe(3)
    expect(field(waiting, "messageQueue", "oldestQueuedAt")).toEqual(field(accepted[0], "createdAt"))
    expect(field(waiting, "connection", "indicator")).toBe("red")
    expect(field(waiting, "connection", "phoneNumber")).toBeNull()

    const jid = await fixture.sim.scan(await sessions.rawQr(session), "5511900001001")
    const sent = await received(jid, 3)
    expect(sent.map((m) => m.text)).toEqual(["um", "dois", "três"])
    expect(sent.map((m) => m.phoneNumber)).toEqual(["5511988880000", "5511988880001", "5511988880002"])
    await eventually(
      "the queue drained",
      () => health(session),
      (body) => field(body, "messageQueue", "pending") === 0 && field(body, "lastActivityAt") !== null
    )
    await eventually(
      "counted as sent",
      () => sessions.status(session),
      (reply) => field(reply.body, "metrics", "messagesSent") === 3
    )
    // Repeating after it was sent still answers the first answer, and sends nothing again.
    expect((await send(session, { to: "+5511988880000", text: "um" }, "order-0")).body).toEqual(accepted[0])
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(onceEach(await fixture.sim.sent(jid))).toHaveLength(3)
  })

  it("keeps a SIGKILLed node's queue: the shard's next owner sends it", async () => {
    const session = await sessions.create("Survives-Kill")
    for (let i = 0; i < 5; i++) {
      expect((await send(session, { to: "+5511977770000", text: `kept ${i}` })).status).toBe(202)
    }
    const owners = await fixture.owners(256)
    const owner = owners.get(shardOf(session.id, 256))
    expect(owner).toBeDefined()
    expect(await Effect.runPromise(fixture.cluster.stopNode(owner ?? "", "SIGKILL"))).not.toBe(0)
    // The survivor takes the shard, shows a QR code, and sends the queue once linked.
    const jid = await fixture.sim.scan(await sessions.rawQr(session), "5511900001002")
    const sent = await received(jid, 5)
    expect(sent.map((m) => m.text)).toEqual(["kept 0", "kept 1", "kept 2", "kept 3", "kept 4"])
    // WhatsApp has the last text a moment before the session records it as sent.
    await eventually(
      "the queue drained",
      () => health(session),
      (body) => field(body, "messageQueue", "pending") === 0
    )
  })

  it("a linked session's node killed mid-queue: every text arrives, a repeat only under its first WhatsApp id", async () => {
    const session = await sessions.link("Mid-Queue", "5511900001003")
    const texts = Array.from({ length: 30 }, (_, i) => `burst ${i}`)
    for (const body of texts) {
      expect((await send(session, { to: "+5511966660000", text: body })).status).toBe(202)
    }
    const owner = (await fixture.owners(256)).get(shardOf(session.id, 256))
    await Effect.runPromise(fixture.cluster.stopNode(owner ?? "", "SIGKILL"))
    const sentBeforeFailover = (await fixture.sim.sent(session.jid)).length
    // The survivor resumes the session from Postgres (no QR) and sends the rest.
    await sessions.statusIs(session, "connected")
    const sent = await eventually(
      "every text arrived",
      () => fixture.sim.sent(session.jid),
      (all) => new Set(all.flatMap((m) => m.text === null ? [] : [m.text])).size === texts.length,
      60_000
    )
    // Every copy was one its contact's phone could decrypt: the new owner never encrypted with a used key.
    expect(sent.filter((m) => m.text === null)).toEqual([])
    expect([...new Set(sent.map((m) => m.text))]).toEqual(texts)
    for (const body of texts) {
      const copies = sent.filter((m) => m.text === body)
      expect(new Set(copies.map((m) => m.id)).size, `${body} sent under more than one id`).toBe(1)
    }
    await eventually("the queue drained", () => health(session), (body) => field(body, "messageQueue", "pending") === 0)
    expect(sentBeforeFailover).toBeLessThan(texts.length)
  })
})

describe("GET /sessions/{sessionId}/messages", () => {
  const history = (session: TestSession, query = "", credentials: { apiKey: string } | { bearer: string } = {
    apiKey: session.key
  }) => call(gateway, "GET", `/sessions/${session.id}/messages${query}`, credentials)

  const listed = (body: unknown) => field(body, "messages") as ReadonlyArray<Record<string, unknown>>

  it("shows both directions newest first, page by page, filtered by direction, contact, status and time", async () => {
    const session = await sessions.link("History", "5511900001010")
    const startedAt = new Date()
    await fixture.sim.message(session.jid, "5511955550001", "oi, primeiro")
    await eventually("the inbound text recorded", () => history(session), (reply) => listed(reply.body).length === 1)
    for (const [i, to] of ["+55 11 95555-0001", "+5511955550002", "5511955550001@s.whatsapp.net"].entries()) {
      expect((await send(session, { to, text: `resposta ${i}` })).status).toBe(202)
    }
    const delivered = await received(session.jid, 3)
    await fixture.sim.message(session.jid, "5511955550002", "oi, segundo")
    // The contact's phone reads the first answer.
    await fixture.sim.receipt(session.jid, delivered[0]?.id ?? "", "read")
    const all = await eventually(
      "five messages, the first answer read",
      () => history(session),
      (reply) =>
        listed(reply.body).length === 5 &&
        listed(reply.body).some((m) => m.text === "resposta 0" && m.status === "read") &&
        listed(reply.body).every((m) => m.status !== "queued")
    )
    const messages = listed(all.body)
    expect(messages.map((m) => m.text)).toEqual([
      "oi, segundo",
      "resposta 2",
      "resposta 1",
      "resposta 0",
      "oi, primeiro"
    ])
    expect(messages.map((m) => m.direction)).toEqual(["inbound", "outbound", "outbound", "outbound", "inbound"])
    expect(messages[0]).toMatchObject({
      jid: "5511955550002@s.whatsapp.net",
      phoneNumber: "5511955550002",
      status: "received",
      error: null
    })
    expect(messages.slice(1, 3).map((m) => m.status)).toEqual(["sent", "sent"])
    expect(field(all.body, "nextCursor")).toBeNull()

    // Two at a time: every message once, in the same order.
    const paged: Array<unknown> = []
    let cursor: unknown = undefined
    do {
      const page = await history(session, `?limit=2${cursor === undefined ? "" : `&cursor=${String(cursor)}`}`)
      expect(page.status, JSON.stringify(page.body)).toBe(200)
      expect(listed(page.body).length).toBeLessThanOrEqual(2)
      paged.push(...listed(page.body).map((m) => m.messageId))
      cursor = field(page.body, "nextCursor") ?? undefined
    } while (cursor !== undefined)
    expect(paged).toEqual(messages.map((m) => m.messageId))

    const texts = async (query: string) => {
      const reply = await history(session, query)
      expect(reply.status, `${query}: ${JSON.stringify(reply.body)}`).toBe(200)
      return listed(reply.body).map((m) => m.text)
    }
    expect(await texts("?direction=inbound")).toEqual(["oi, segundo", "oi, primeiro"])
    expect(await texts(`?contact=${encodeURIComponent("+55 11 95555-0001")}`)).toEqual([
      "resposta 2",
      "resposta 0",
      "oi, primeiro"
    ])
    expect(await texts("?contact=5511955550002@s.whatsapp.net&direction=outbound")).toEqual(["resposta 1"])
    expect(await texts("?status=read")).toEqual(["resposta 0"])
    expect(await texts(`?until=${startedAt.toISOString()}`)).toEqual([])
    const middle = String(messages[2]?.createdAt)
    expect(await texts(`?since=${encodeURIComponent(middle)}&direction=outbound`)).toContain("resposta 1")

    // One message by id, by the key or the tenant.
    const one = await call(gateway, "GET", `/sessions/${session.id}/messages/${String(messages[3]?.messageId)}`, {
      bearer: tenantToken
    })
    expect(one.status).toBe(200)
    expect(one.body).toEqual(messages[3])
  })

  it("answers 404 across sessions and 400 for bad queries", async () => {
    const session = await sessions.create("History-Guard")
    const other = await sessions.create("History-Other")
    expect((await send(session, { to: "+5511955550009", text: "queued" })).status).toBe(202)
    const queued = listed((await history(session)).body)
    expect(queued).toHaveLength(1)
    expect(queued[0]).toMatchObject({ status: "queued", direction: "outbound", text: "queued" })
    const id = String(queued[0]?.messageId)

    expect((await history(session, "", { apiKey: other.key })).status).toBe(404)
    const crossed = await call(gateway, "GET", `/sessions/${other.id}/messages/${id}`, { apiKey: other.key })
    expect(crossed.status).toBe(404)
    expect(field(crossed.body, "error", "code")).toBe("not_found")
    const unknown = await call(gateway, "GET", `/sessions/${session.id}/messages/msg_00000000000000000000`, {
      apiKey: session.key
    })
    expect(unknown.status).toBe(404)
    for (
      const query of [
        "?limit=0",
        "?limit=501",
        "?limit=ten",
        "?direction=sideways",
        "?status=lost",
        "?contact=12",
        "?since=yesterday",
        "?cursor=not-a-cursor",
        `?since=${encodeURIComponent("2026-12-01T10:00:00Z")}&until=${encodeURIComponent("2026-12-01T09:00:00Z")}`
      ]
    ) {
      const reply = await history(session, query)
      expect(reply.status, query).toBe(400)
      expect(field(reply.body, "error", "code")).toBe("bad_request")
    }
    const malformed = await call(gateway, "GET", `/sessions/${session.id}/messages/nope`, { apiKey: session.key })
    expect(malformed.status).toBe(400)
  })
})
