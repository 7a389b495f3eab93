/**
 * State and message events on NATS, on real processes: the subscriber of the README (plain nats.js, run as its own
 * process exactly as written) receives every event of its tenant in order, in the envelope the product's webhook
 * handler reads, each once, and only for changes that were committed.
 */
import { EventEnvelopeJson } from "@wacluster/domain/Events"
import { Schema } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { readFile } from "node:fs/promises"
import { createInterface } from "node:readline"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Fixture, startCluster } from "../support/ClusterFixture.js"
import { call, createTenant } from "../support/Gateway.js"
import { eventually, sessionsOf } from "../support/Sessions.js"

const EXAMPLE = "test/examples/events-subscriber.ts"

let fixture: Fixture
let gateway: string
let tenantToken: string
let tenantId: string
let subscriber: ChildProcess | undefined
const received: Array<typeof EventEnvelopeJson.Type> = []
const decode = Schema.decodeUnknownSync(EventEnvelopeJson)

beforeAll(async () => {
  fixture = await startCluster({ nodes: 1, env: { SESSION_SEND_INTERVAL: "50 millis" } })
  gateway = fixture.cluster.gatewayUrl
  const tenant = await createTenant(fixture.cluster, "ev")
  tenantToken = tenant.token
  tenantId = tenant.id
  subscriber = spawn(process.execPath, ["--import", "tsx", EXAMPLE], {
    env: { ...process.env, NATS_URL: fixture.cluster.natsUrl, TENANT_ID: tenantId },
    stdio: ["ignore", "pipe", "inherit"]
  })
  if (subscriber.stdout === null) throw new Error("the subscriber has no stdout")
  createInterface({ input: subscriber.stdout }).on("line", (line) => received.push(decode(line)))
}, 180_000)

afterAll(async () => {
  subscriber?.kill("SIGTERM")
  await fixture?.stop()
}, 60_000)

const eventsOf = (sessionId: string) => received.filter((event) => event.data.sessionId === sessionId)
const typesOf = (sessionId: string) => eventsOf(sessionId).map((event) => event.type)

describe("events on NATS (WA_EVENTS)", () => {
  it("the README shows the subscriber exactly as the test runs it", async () => {
    const readme = await readFile("README.md", "utf8")
    expect(readme).toContain((await readFile(EXAMPLE, "utf8")).trim())
  })

  it("tells a subscriber everything that happens to a session, in order, once each", async () => {
    const sessions = sessionsOf(gateway, tenantToken, fixture.sim)
    const session = await sessions.link("Evented", "6281100005001")
    await eventually(
      "linked events",
      async () => typesOf(session.id),
      (types) => types.includes("session.socket-connected")
    )

    // A contact writes; the session answers; the contact's phone receives it.
    await fixture.sim.message(session.jid, "6281100005999", "halo")
    const sent = await call(gateway, "POST", `/sessions/${session.id}/messages`, {
      apiKey: session.key,
      json: { to: "+6281100005999", text: "halo juga" }
    })
    expect(sent.status).toBe(202)
    const [delivered] = await eventually(
      "the text delivered",
      () => fixture.sim.sent(session.jid),
      (s) => s.length === 1
    )
    await eventually("message.sent", async () => typesOf(session.id), (types) => types.includes("message.sent"))
    await fixture.sim.receipt(session.jid, delivered?.id ?? "", "delivered")
    // The network drops the connection; the session reconnects by itself.
    await fixture.sim.drop(session.jid)
    await eventually(
      "disconnected and connected again",
      async () => typesOf(session.id),
      (types) => types.filter((type) => type === "session.socket-connected").length === 2
    )
    // Deleted: the last event.
    expect((await call(gateway, "DELETE", `/sessions/${session.id}`, { bearer: tenantToken })).status).toBe(200)
    await eventually("session.deleted", async () => typesOf(session.id), (types) => types.includes("session.deleted"))

    const events = eventsOf(session.id)
    const types = events.map((event) => event.type)
    // Everything that happened, in the order it happened.
    const order = [
      "session.qr-updated",
      "session.socket-connected",
      "message.received",
      "message-personal.received",
      "message.sent",
      "message.delivered",
      "session.socket-disconnected",
      "session.deleted"
    ]
    const positions = order.map((type) => types.indexOf(type as (typeof types)[number]))
    expect(positions.every((position) => position >= 0), JSON.stringify(types)).toBe(true)
    expect([...positions].sort((a, b) => a - b)).toEqual(positions)
    expect(types.at(-1)).toBe("session.deleted")
    // Each once, for this tenant, with the session in data.
    expect(new Set(events.map((event) => event.id)).size).toBe(events.length)
    for (const event of events) expect(event.tenantId).toBe(tenantId)
    const connected = events.find((event) => event.type === "session.socket-connected")
    expect(connected?.data).toMatchObject({ sessionId: session.id, phoneNumber: "6281100005001" })
    const inbound = events.find((event) => event.type === "message.received")
    expect(inbound?.data).toMatchObject({ text: "halo", phoneNumber: "6281100005999" })
    const disconnected = events.find((event) => event.type === "session.socket-disconnected")
    expect(disconnected?.data).toMatchObject({ reason: "connection_lost" })
    const statuses = events.filter((event) => event.type === "session.status").map((event) => event.data.status)
    expect(statuses).toContain("connected")
    // A QR code's event never carries the code itself.
    const qr = events.find((event) => event.type === "session.qr-updated")
    expect(Object.keys(qr?.data ?? {}).sort()).toEqual(["expiresAt", "sessionId"])
    // Timestamps never go backwards for one session.
    const times = events.map((event) => event.timestamp.epochMillis)
    expect([...times].sort((a, b) => a - b)).toEqual(times)
  })
})
