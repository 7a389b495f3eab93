/**
 * Webhooks on real processes: endpoints managed through the gateway, events delivered by the nodes to a real
 * Express receiver, signed so that the standardwebhooks and svix libraries accept them; retries, turning off a
 * failing endpoint, the delivery log, redelivery, the SSRF guard, and delivery across a node's death.
 */
import { SqlClient } from "@effect/sql"
import { shardOf } from "@wacluster/domain/Shard"
import * as Database from "@wacluster/store/Database"
import { Effect } from "effect"
import type { Request, Response } from "express"
import express from "express"
import { Webhook as StandardWebhook } from "standardwebhooks"
import { Webhook as SvixWebhook } from "svix"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Fixture, startCluster } from "../support/ClusterFixture.js"
import { call, createTenant, field, text } from "../support/Gateway.js"
import { eventually, type LinkedSession, sessionsOf } from "../support/Sessions.js"
import { type ReceivedWebhook, startReceiver, type WebhookReceiver } from "../support/WebhookReceiver.js"

const RETRIES = 12

let fixture: Fixture
let gateway: string
let tenant: { readonly id: string; readonly token: string }
let receiver: WebhookReceiver
/** What the product's own handler (the seeds' Express code) alerted about. */
const alerts: Array<string> = []

beforeAll(async () => {
  fixture = await startCluster({
    nodes: 2,
    env: {
      WEBHOOK_ALLOW_NETWORKS: "127.0.0.0/8,::1/128",
      WEBHOOK_RETRY_SCHEDULE: Array.from({ length: RETRIES }, () => "1 second").join(","),
      WEBHOOK_TIMEOUT: "5 seconds",
      SESSION_SEND_INTERVAL: "50 millis"
    }
  })
  gateway = fixture.cluster.gatewayUrl
  tenant = await createTenant(fixture.cluster, "hooks")
  receiver = await startReceiver((app) => {
    const sendAlert = (message: string) => alerts.push(message)
    // The seeds' handler, as written there.
    app.post("/webhook", express.json(), (req: Request, res: Response) => {
      const { data, type } = req.body
      if (type === "session.socket-disconnected") {
        // Alert your team
        sendAlert(`Session ${data.sessionId} disconnected`)
      }
      res.sendStatus(200)
    })
  })
}, 180_000)

afterAll(async () => {
  await receiver?.stop()
  await fixture?.stop()
}, 60_000)

const hooks = (sessionId: string) => `/sessions/${sessionId}/webhooks`

const createWebhook = async (sessionId: string, json: Record<string, unknown>, token = tenant.token) => {
  const reply = await call(gateway, "POST", hooks(sessionId), { bearer: token, json })
  expect(reply.status, JSON.stringify(reply.body)).toBe(201)
  return { id: text(reply.body, "id"), secret: text(reply.body, "secret") }
}

const deliveries = async (sessionId: string, webhookId: string) => {
  const reply = await call(gateway, "GET", `${hooks(sessionId)}/${webhookId}/deliveries?limit=500`, {
    bearer: tenant.token
  })
  expect(reply.status, JSON.stringify(reply.body)).toBe(200)
  return field(reply.body, "deliveries") as Array<Record<string, unknown>>
}

const arrivedAt = (path: string) => receiver.received.filter((hook) => hook.path === path)

const verifyBoth = (secret: string, hook: ReceivedWebhook) => {
  const headers = {
    "webhook-id": hook.headers["webhook-id"] ?? "",
    "webhook-timestamp": hook.headers["webhook-timestamp"] ?? "",
    "webhook-signature": hook.headers["webhook-signature"] ?? ""
  }
  expect(new StandardWebhook(secret).verify(hook.raw, headers)).toEqual(hook.body)
  // svix answers nothing and throws when a signature does not match.
  const svix = new SvixWebhook(secret)
  expect(() => svix.verify(hook.raw, headers)).not.toThrow()
  const tampered = hook.raw.replace(hook.body.id, "evt_XXXXXXXXXXXXXXXXXXXX")
  expect(() => new StandardWebhook(secret).verify(tampered, headers)).toThrow()
  expect(() => svix.verify(tampered, headers)).toThrow()
}

describe("webhook endpoints", () => {
  it("are created with a whsec_ secret shown once, listed, changed, rotated and removed", async () => {
    const sessions = sessionsOf(gateway, tenant.token, fixture.sim)
    const session = await sessions.create("Hooked")
    const created = await call(gateway, "POST", hooks(session.id), {
      bearer: tenant.token,
      json: { url: receiver.url("/a"), eventTypes: ["session.status", "message.received"] }
    })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    expect(created.body).toMatchObject({
      sessionId: session.id,
      url: receiver.url("/a"),
      eventTypes: ["session.status", "message.received"],
      enabled: true,
      disabledReason: null
    })
    const id = text(created.body, "id")
    expect(id).toMatch(/^wh_[0-9A-Za-z]{20}$/)
    expect(text(created.body, "secret")).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/)

    const listed = await call(gateway, "GET", hooks(session.id), { bearer: tenant.token })
    expect(listed.status).toBe(200)
    expect(field(listed.body, "webhooks")).toHaveLength(1)
    expect(JSON.stringify(listed.body)).not.toContain("whsec_")
    const one = await call(gateway, "GET", `${hooks(session.id)}/${id}`, { bearer: tenant.token })
    expect(one.body).toEqual(field(listed.body, "webhooks", 0))

    const changed = await call(gateway, "PATCH", `${hooks(session.id)}/${id}`, {
      bearer: tenant.token,
      json: { url: receiver.url("/b"), eventTypes: [], enabled: false }
    })
    expect(changed.status, JSON.stringify(changed.body)).toBe(200)
    expect(changed.body).toMatchObject({ url: receiver.url("/b"), eventTypes: [], enabled: false })

    const rotated = await call(gateway, "POST", `${hooks(session.id)}/${id}/rotate-secret`, { bearer: tenant.token })
    expect(rotated.status).toBe(200)
    expect(text(rotated.body, "secret")).toMatch(/^whsec_/)
    expect(text(rotated.body, "secret")).not.toBe(text(created.body, "secret"))
    expect(Date.parse(text(rotated.body, "previousSecretValidUntil"))).toBeGreaterThan(Date.now() + 23 * 3600_000)

    // Several endpoints per session.
    await createWebhook(session.id, { url: receiver.url("/c") })
    expect(field((await call(gateway, "GET", hooks(session.id), { bearer: tenant.token })).body, "webhooks"))
      .toHaveLength(2)

    const removed = await call(gateway, "DELETE", `${hooks(session.id)}/${id}`, { bearer: tenant.token })
    expect(removed.status).toBe(200)
    expect(removed.body).toEqual({ id, deleted: true })
    expect((await call(gateway, "GET", `${hooks(session.id)}/${id}`, { bearer: tenant.token })).status).toBe(404)
    expect((await call(gateway, "DELETE", `${hooks(session.id)}/${id}`, { bearer: tenant.token })).status).toBe(404)
  })

  it("refuses bad input, private targets and other people's sessions with a clear 4xx", async () => {
    const sessions = sessionsOf(gateway, tenant.token, fixture.sim)
    const session = await sessions.create("Guarded")
    const refused = async (json: unknown, says: string) => {
      const reply = await call(gateway, "POST", hooks(session.id), { bearer: tenant.token, json })
      expect(reply.status, JSON.stringify(reply.body)).toBe(400)
      expect(field(reply.body, "error", "code")).toBe("bad_request")
      expect(JSON.stringify(reply.body)).toContain(says)
    }
    await refused({}, "url")
    await refused({ url: "not a url" }, "is not a URL")
    await refused({ url: "ftp://127.0.0.1/x" }, "must be http or https")
    await refused({ url: "http://10.1.2.3/hook" }, "private address")
    await refused({ url: "http://192.168.0.10/hook" }, "private address")
    await refused({ url: "http://169.254.169.254/latest/meta-data" }, "link-local address")
    await refused({ url: "http://[fd00::1]/hook" }, "private (unique local) address")
    await refused({ url: "http://[::ffff:10.0.0.1]/hook" }, "private address")
    await refused({ url: "http://0.0.0.0:8080/hook" }, "'this network' address")
    await refused({ url: "http://no-such-host.invalid/hook" }, "does not resolve")
    await refused({ url: receiver.url(), eventTypes: ["session.nope"] }, "eventTypes")
    await refused({ url: receiver.url(), eventTypes: ["session.status", "session.status"] }, "must not repeat")
    const patch = await call(gateway, "PATCH", `${hooks(session.id)}/wh_${"x".repeat(20)}`, {
      bearer: tenant.token,
      json: {}
    })
    expect(patch.status).toBe(400)

    // Only the tenant manages endpoints: the session's own key cannot, another tenant sees nothing.
    const own = await createWebhook(session.id, { url: receiver.url() })
    const byKey = await call(gateway, "GET", hooks(session.id), { apiKey: session.key })
    expect(byKey.status).toBe(401)
    const other = await createTenant(fixture.cluster, "hooks-other")
    for (
      const [method, path] of [
        ["GET", hooks(session.id)],
        ["POST", hooks(session.id)],
        ["GET", `${hooks(session.id)}/${own.id}`],
        ["PATCH", `${hooks(session.id)}/${own.id}`],
        ["DELETE", `${hooks(session.id)}/${own.id}`],
        ["POST", `${hooks(session.id)}/${own.id}/rotate-secret`],
        ["GET", `${hooks(session.id)}/${own.id}/deliveries`]
      ] as const
    ) {
      const reply = await call(gateway, method, path, {
        bearer: other.token,
        ...(method === "GET" || method === "DELETE" ? {} : { json: { url: receiver.url() } })
      })
      expect(reply.status, `${method} ${path}`).toBe(404)
    }
    expect((await call(gateway, "GET", `${hooks(session.id)}/${own.id}`, { bearer: tenant.token })).status).toBe(200)
  })

  it("holds a session to 20 endpoints even when many are created at once: 201 for twenty, 409 for the rest", async () => {
    const session = await sessionsOf(gateway, tenant.token, fixture.sim).create("Crowded")
    const replies = await Promise.all(
      Array.from(
        { length: 26 },
        (_, i) =>
          call(gateway, "POST", hooks(session.id), { bearer: tenant.token, json: { url: receiver.url(`/crowd/${i}`) } })
      )
    )
    expect(replies.filter((reply) => reply.status === 201)).toHaveLength(20)
    const refused = replies.filter((reply) => reply.status !== 201)
    expect(refused).toHaveLength(6)
    for (const reply of refused) {
      expect(reply.status, JSON.stringify(reply.body)).toBe(409)
      expect(text(reply.body, "error", "message")).toContain("at most 20 webhooks")
    }
    const listed = await call(gateway, "GET", hooks(session.id), { bearer: tenant.token })
    expect((listed.body as { webhooks: Array<unknown> }).webhooks).toHaveLength(20)
  })
})

describe("webhook delivery", () => {
  let linked: LinkedSession

  beforeAll(async () => {
    linked = await sessionsOf(gateway, tenant.token, fixture.sim).link("Delivered", "6281100007001")
  }, 120_000)

  it("the seeds' Express handler gets session.socket-disconnected when the phone's connection drops", async () => {
    const hook = await createWebhook(linked.id, { url: receiver.url("/webhook") })
    const signed = await createWebhook(linked.id, { url: receiver.url("/signed") })
    await fixture.sim.drop(linked.jid)
    await eventually("the alert", async () => alerts, (sent) => sent.includes(`Session ${linked.id} disconnected`))
    // Every delivery is signed the Standard Webhooks way: both libraries verify it.
    const [first] = await eventually("signed deliveries", async () => arrivedAt("/signed"), (got) => got.length > 0)
    if (first === undefined) throw new Error("no delivery")
    verifyBoth(signed.secret, first)
    expect(first.headers["webhook-id"]).toBe(first.body.id)
    expect(first.headers["content-type"]).toBe("application/json")
    expect(first.body).toMatchObject({ tenantId: tenant.id, data: { sessionId: linked.id } })
    const log = await eventually(
      "the delivery log",
      () => deliveries(linked.id, hook.id),
      (entries) => entries.some((entry) => entry.eventType === "session.socket-disconnected")
    )
    expect(log[0]).toMatchObject({ attempt: 1, succeeded: true, statusCode: 200, error: null, manual: false })
  })

  /** Texts from a contact, each a message.received event, in this order. */
  const inbound = async (session: LinkedSession, from: string, texts: ReadonlyArray<string>) => {
    for (const body of texts) await fixture.sim.message(session.jid, from, body)
  }
  const textsAt = (path: string) =>
    arrivedAt(path).filter((hook) => hook.body.type === "message.received").map((hook) => hook.body.data.text)

  it("keeps what a receiver missed while it was down and delivers all of it in order once it is up", async () => {
    const down = await startReceiver()
    const session = await sessionsOf(gateway, tenant.token, fixture.sim).link("Down-Then-Up", "6281100007002")
    const hook = await createWebhook(session.id, { url: down.url("/down"), eventTypes: ["message.received"] })
    await down.stop()
    const texts = Array.from({ length: 20 }, (_, i) => `while down ${i}`)
    await inbound(session, "6281100007999", texts)
    await eventually(
      "failed attempts in the log",
      () => deliveries(session.id, hook.id),
      (log) => log.filter((entry) => entry.succeeded === false).length >= 2,
      20_000
    )
    const failed = (await deliveries(session.id, hook.id)).find((entry) => entry.succeeded === false)
    expect(failed).toMatchObject({ statusCode: null, manual: false })
    expect(String(failed?.error)).toMatch(/ECONNREFUSED/)
    await down.start()
    const got = await eventually(
      "everything delivered",
      async () => down.received.map((h) => h.body.data.text),
      (all) => all.length >= texts.length,
      30_000
    )
    expect(got).toEqual(texts)
    // Each event once: retries only ever re-sent the one at the head, which had never arrived.
    expect(new Set(down.received.map((h) => h.headers["webhook-id"])).size).toBe(texts.length)
    await down.stop()
  })

  it("turns off an endpoint that keeps failing, says so with webhook.disabled, and resumes once enabled", async () => {
    const session = await sessionsOf(gateway, tenant.token, fixture.sim).link("Failing", "6281100007003")
    receiver.answer = (path) => (path === "/failing" ? { status: 503 } : { status: 200 })
    const failing = await createWebhook(session.id, { url: receiver.url("/failing"), eventTypes: ["message.received"] })
    const watcher = await createWebhook(session.id, { url: receiver.url("/watcher"), eventTypes: ["webhook.disabled"] })
    await inbound(session, "6281100007998", ["first", "second"])
    const [disabled] = await eventually(
      "webhook.disabled",
      async () => arrivedAt("/watcher"),
      (got) => got.length > 0,
      60_000
    )
    expect(disabled?.body).toMatchObject({
      type: "webhook.disabled",
      tenantId: tenant.id,
      data: { sessionId: session.id, webhookId: failing.id, url: receiver.url("/failing") }
    })
    verifyBoth(watcher.secret, disabled as ReceivedWebhook)
    const view = await call(gateway, "GET", `${hooks(session.id)}/${failing.id}`, { bearer: tenant.token })
    expect(view.body).toMatchObject({ enabled: false })
    expect(String(field(view.body, "disabledReason"))).toContain("HTTP 503")
    const log = await deliveries(session.id, failing.id)
    // The first attempt and every retry of the schedule, all at the first text; none at the second.
    expect(log).toHaveLength(RETRIES + 1)
    expect(log.map((entry) => entry.attempt)).toEqual(Array.from({ length: RETRIES + 1 }, (_, i) => RETRIES + 1 - i))
    expect(log.every((entry) => entry.statusCode === 503 && entry.succeeded === false)).toBe(true)
    expect(new Set(log.map((entry) => entry.eventId)).size).toBe(1)
    expect(arrivedAt("/failing").map((hook) => hook.headers["webhook-id"])).toEqual(
      Array.from({ length: RETRIES + 1 }, () => log[0]?.eventId)
    )
    // Turned off, it still keeps what happens; redelivery waits until it is enabled.
    await inbound(session, "6281100007998", ["third"])
    const early = await call(gateway, "POST", `${hooks(session.id)}/${failing.id}/deliveries/${log[0]?.id}/redeliver`, {
      bearer: tenant.token
    })
    expect(early.status).toBe(409)
    receiver.answer = () => ({ status: 200 })
    const enabled = await call(gateway, "PATCH", `${hooks(session.id)}/${failing.id}`, {
      bearer: tenant.token,
      json: { enabled: true }
    })
    expect(enabled.body).toMatchObject({ enabled: true, disabledReason: null })
    // The one given up on is not sent again by itself; the rest follow in order.
    await eventually("the rest", async () => textsAt("/failing"), (got) => got.includes("third"), 30_000)
    expect(textsAt("/failing").filter((t) => t !== "first")).toEqual(["second", "third"])
    const again = await call(gateway, "POST", `${hooks(session.id)}/${failing.id}/deliveries/${log[0]?.id}/redeliver`, {
      bearer: tenant.token
    })
    expect(again.status, JSON.stringify(again.body)).toBe(202)
    expect(again.body).toEqual({ deliveryId: log[0]?.id, eventId: log[0]?.eventId, status: "queued" })
    const redelivered = await eventually(
      "the redelivery",
      () => deliveries(session.id, failing.id),
      (entries) => entries.some((entry) => entry.manual === true && entry.succeeded === true)
    )
    expect(redelivered.find((entry) => entry.manual === true)).toMatchObject({
      eventId: log[0]?.eventId,
      attempt: 1,
      statusCode: 200
    })
    const unknown = await call(
      gateway,
      "POST",
      `${hooks(session.id)}/${failing.id}/deliveries/dlv_${"x".repeat(20)}/redeliver`,
      { bearer: tenant.token }
    )
    expect(unknown.status).toBe(404)
  })

  it("signs with both secrets while a rotated-out secret is still valid", async () => {
    const hook = await createWebhook(linked.id, { url: receiver.url("/rotated"), eventTypes: ["message.received"] })
    const rotated = await call(gateway, "POST", `${hooks(linked.id)}/${hook.id}/rotate-secret`, {
      bearer: tenant.token
    })
    const secret = text(rotated.body, "secret")
    await inbound(linked, "6281100007997", ["after rotation"])
    const [got] = await eventually("delivered", async () => arrivedAt("/rotated"), (all) => all.length > 0)
    if (got === undefined) throw new Error("no delivery")
    expect(got.headers["webhook-signature"]?.split(" ")).toHaveLength(2)
    verifyBoth(secret, got)
    verifyBoth(hook.secret, got)
  })

  it("refuses at delivery a url that leads inside the network, whatever was stored", async () => {
    const hook = await createWebhook(linked.id, { url: receiver.url("/inside"), eventTypes: ["message.received"] })
    // As if the url had been stored before the guard existed (or by hand): the delivery checks it again.
    await Effect.runPromise(
      Effect.flatMap(
        SqlClient.SqlClient,
        (sql) => sql`UPDATE webhooks SET url = 'http://169.254.169.254/latest/meta-data' WHERE id = ${hook.id}`
      ).pipe(
        Effect.provide(Database.layerFromUrl(fixture.cluster.databaseUrl, { maxConnections: 1 }))
      )
    )
    await inbound(linked, "6281100007996", ["to the metadata service"])
    const [entry] = await eventually(
      "a refused attempt",
      () => deliveries(linked.id, hook.id),
      (log) => log.length > 0
    )
    expect(entry).toMatchObject({ succeeded: false, statusCode: null, latencyMs: 0 })
    expect(String(entry?.error)).toContain("refused: 169.254.169.254 is a link-local address")
  })

  it("does not let a slow endpoint hold back another tenant's deliveries", async () => {
    const slowTenant = await createTenant(fixture.cluster, "slow")
    const slow = await sessionsOf(gateway, slowTenant.token, fixture.sim).link("Slow", "6281100007004")
    const fast = await sessionsOf(gateway, tenant.token, fixture.sim).link("Fast", "6281100007005")
    receiver.answer = (path) => (path === "/slow" ? { status: 200, delayMs: 4_000 } : { status: 200 })
    await createWebhook(slow.id, { url: receiver.url("/slow"), eventTypes: ["message.received"] }, slowTenant.token)
    await createWebhook(fast.id, { url: receiver.url("/fast"), eventTypes: ["message.received"] })
    await inbound(slow, "6281100007995", ["s0", "s1", "s2"])
    await eventually("the slow endpoint is busy", async () => textsAt("/slow"), (got) => got.length === 1)
    const started = Date.now()
    await inbound(fast, "6281100007995", ["f0", "f1", "f2"])
    await eventually("the fast endpoint has everything", async () => textsAt("/fast"), (got) => got.length === 3)
    expect(Date.now() - started).toBeLessThan(3_000)
    expect(textsAt("/slow").length).toBeLessThan(3)
    await eventually("the slow one too, in order", async () => textsAt("/slow"), (got) => got.length === 3, 30_000)
    expect(textsAt("/slow")).toEqual(["s0", "s1", "s2"])
    receiver.answer = () => ({ status: 200 })
  })

  it("delivers again, with the same webhook-id, what the node that died was delivering", async () => {
    const session = await sessionsOf(gateway, tenant.token, fixture.sim).link("Node-Dies", "6281100007006")
    receiver.answer = (path) => (path === "/dying" ? { status: 200, delayMs: 20_000 } : { status: 200 })
    await createWebhook(session.id, { url: receiver.url("/dying"), eventTypes: ["message.received"] })
    await inbound(session, "6281100007994", ["in flight"])
    const [first] = await eventually(
      "the first attempt arrives",
      async () => arrivedAt("/dying"),
      (got) => got.length > 0
    )
    const owner = (await fixture.owners(256)).get(shardOf(session.id, 256))
    expect(owner).toBeDefined()
    receiver.answer = () => ({ status: 200 })
    expect(await Effect.runPromise(fixture.cluster.stopNode(owner ?? "", "SIGKILL"))).not.toBe(0)
    const got = await eventually(
      "delivered again by the survivor",
      async () => arrivedAt("/dying"),
      (all) => all.length >= 2,
      60_000
    )
    expect(got[1]?.headers["webhook-id"]).toBe(first?.headers["webhook-id"])
    expect(got[1]?.raw).toBe(first?.raw)
  })
})
