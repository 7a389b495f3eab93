/**
 * Rate limits on real processes: a key's own limits, the session's limits (set with PATCH), requests per minute and
 * texts per hour, counted by the session's owner so they hold across every gateway of the cluster; 429 with
 * Retry-After and RateLimit-* headers, nothing done or queued for a refused request.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import * as Database from "@wacluster/store/Database"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Fixture, startCluster } from "../support/ClusterFixture.js"
import { call, createTenant, field, type Reply, text } from "../support/Gateway.js"
import { sessionsOf, type TestSession } from "../support/Sessions.js"

let fixture: Fixture
let gateway: string
let secondGateway: string
let tenantToken: string
let sessions: ReturnType<typeof sessionsOf>

beforeAll(async () => {
  fixture = await startCluster({ nodes: 2 })
  gateway = fixture.cluster.gatewayUrl
  secondGateway = (await Effect.runPromise(fixture.cluster.addGateway)).url
  tenantToken = (await createTenant(fixture.cluster, "rl")).token
  sessions = sessionsOf(gateway, tenantToken, fixture.sim)
}, 180_000)

afterAll(async () => {
  await fixture?.stop()
}, 60_000)

const issueKey = async (session: TestSession, rateLimit: unknown) => {
  const reply = await call(gateway, "POST", `/sessions/${session.id}/keys`, {
    bearer: tenantToken,
    json: { name: "limited", rateLimit }
  })
  expect(reply.status, JSON.stringify(reply.body)).toBe(201)
  return text(reply.body, "key")
}

const statusWith = (base: string, session: TestSession, credentials: { apiKey: string } | { bearer: string }) =>
  call(base, "GET", `/sessions/${session.id}/status`, credentials)

const expectLimited = (reply: Reply, expected: { kind: string; scope: string; limit: number; window: number }) => {
  expect(reply.status, JSON.stringify(reply.body)).toBe(429)
  expect(field(reply.body, "error", "code")).toBe("rate_limited")
  expect(field(reply.body, "error", "details")).toEqual({
    kind: expected.kind,
    scope: expected.scope,
    limit: expected.limit,
    windowSeconds: expected.window
  })
  const retryAfter = Number(reply.headers.get("retry-after"))
  expect(retryAfter).toBeGreaterThanOrEqual(1)
  expect(retryAfter).toBeLessThanOrEqual(Math.ceil(expected.window / expected.limit) + 1)
  expect(reply.headers.get("ratelimit-limit")).toBe(String(expected.limit))
  expect(reply.headers.get("ratelimit-remaining")).toBe("0")
  expect(Number(reply.headers.get("ratelimit-reset"))).toBeGreaterThanOrEqual(retryAfter)
  expect(reply.headers.get("ratelimit-policy")).toBe(`${expected.limit};w=${expected.window}`)
}

describe("rate limits", () => {
  it("holds a key to its own requests per minute across both gateways; the session's other keys go on", async () => {
    const session = await sessions.create("Key-Limited")
    const limited = await issueKey(session, { requestsPerMinute: 6 })
    // Alternating gateways: one count, wherever the requests come in.
    for (let i = 0; i < 6; i++) {
      const reply = await statusWith(i % 2 === 0 ? gateway : secondGateway, session, { apiKey: limited })
      expect(reply.status, `request ${i + 1}: ${JSON.stringify(reply.body)}`).toBe(200)
    }
    for (const base of [gateway, secondGateway]) {
      expectLimited(await statusWith(base, session, { apiKey: limited }), {
        kind: "requests",
        scope: "key",
        limit: 6,
        window: 60
      })
    }
    // Every session route counts, the history included.
    const history = await call(secondGateway, "GET", `/sessions/${session.id}/messages`, { apiKey: limited })
    expect(history.status).toBe(429)
    expect((await statusWith(gateway, session, { apiKey: session.key })).status).toBe(200)
    expect((await statusWith(secondGateway, session, { bearer: tenantToken })).status).toBe(200)
  })

  it("holds the session to its own limit (set with PATCH) whatever the credentials, and lifts it with null", async () => {
    const session = await sessions.create("Session-Limited")
    const patched = await call(gateway, "PATCH", `/sessions/${session.id}`, {
      bearer: tenantToken,
      json: { rateLimit: { requestsPerMinute: 5 } }
    })
    expect(patched.status, JSON.stringify(patched.body)).toBe(200)
    expect(field(patched.body, "rateLimit")).toEqual({ requestsPerMinute: 5, messagesPerHour: null })
    const credentials = [{ apiKey: session.key }, { bearer: tenantToken }]
    let allowed = 0
    let refused: Reply | undefined
    for (let i = 0; i < 8 && refused === undefined; i++) {
      const reply = await statusWith(
        i % 2 === 0 ? gateway : secondGateway,
        session,
        credentials[i % 2] ?? {
          bearer: tenantToken
        }
      )
      if (reply.status === 200) allowed++
      else refused = reply
    }
    // Five a minute (the PATCH's own request, counted under the old limit a moment before, may still hold a sliver
    // of the first interval).
    expect(allowed).toBeGreaterThanOrEqual(4)
    expect(allowed).toBeLessThanOrEqual(5)
    expectLimited(refused ?? { status: 0, headers: new Headers(), body: null }, {
      kind: "requests",
      scope: "session",
      limit: 5,
      window: 60
    })
    const lifted = await call(gateway, "PATCH", `/sessions/${session.id}`, {
      bearer: tenantToken,
      json: { rateLimit: { requestsPerMinute: null } }
    })
    // Lifting is itself a request of the limited session: refused, and nothing changed, until the limit lets one
    // through.
    expectLimited(lifted, { kind: "requests", scope: "session", limit: 5, window: 60 })
    const unchanged = await call(gateway, "GET", `/sessions/${session.id}`, { bearer: tenantToken })
    expect(unchanged.status).toBe(429)
    await new Promise((resolve) => setTimeout(resolve, Number(lifted.headers.get("retry-after")) * 1000))
    const again = await call(gateway, "PATCH", `/sessions/${session.id}`, {
      bearer: tenantToken,
      json: { rateLimit: { requestsPerMinute: null } }
    })
    expect(
      again.status,
      `${JSON.stringify(again.body)} retry-after ${again.headers.get("retry-after")} (lifted: ${
        lifted.headers.get("retry-after")
      })`
    ).toBe(200)
    expect(field(again.body, "rateLimit", "requestsPerMinute")).toBeNull()
    for (let i = 0; i < 10; i++) expect((await statusWith(gateway, session, { apiKey: session.key })).status).toBe(200)
    for (const body of [{ rateLimit: { requestsPerMinute: 0 } }, { rateLimit: { messagesPerHour: "many" } }]) {
      const bad = await call(gateway, "PATCH", `/sessions/${session.id}`, { bearer: tenantToken, json: body })
      expect(bad.status, JSON.stringify(body)).toBe(400)
    }
  })

  it("holds a key to its texts per hour: a refused text is not queued, a repeated one is not counted", async () => {
    const session = await sessions.create("Send-Limited")
    const limited = await issueKey(session, { messagesPerHour: 3 })
    const send = (base: string, i: number, idempotencyKey?: string) =>
      call(base, "POST", `/sessions/${session.id}/messages`, {
        apiKey: limited,
        json: { to: "+4915100003000", text: `text ${i}` },
        ...(idempotencyKey === undefined ? {} : { headers: { "idempotency-key": idempotencyKey } })
      })
    expect((await send(gateway, 0, "first")).status).toBe(202)
    // The same request again: the first answer, not a second text.
    expect((await send(secondGateway, 0, "first")).status).toBe(202)
    expect((await send(secondGateway, 1)).status).toBe(202)
    expect((await send(gateway, 2)).status).toBe(202)
    const refused = await send(secondGateway, 3)
    expectLimited(refused, { kind: "messages", scope: "key", limit: 3, window: 3600 })
    const queue = await call(gateway, "GET", `/sessions/${session.id}/health`, { apiKey: session.key })
    expect(field(queue.body, "messageQueue", "pending")).toBe(3)
    // Reading is not sending: the key still reads.
    expect((await statusWith(gateway, session, { apiKey: limited })).status).toBe(200)
  })
})

describe("revocation across gateways", () => {
  it("a key revoked through one gateway is refused by the other at once, not a cache lifetime later", async () => {
    const session = await sessions.create("Revoked-Everywhere")
    const issued = await call(gateway, "POST", `/sessions/${session.id}/keys`, {
      bearer: tenantToken,
      json: { name: "short-lived" }
    })
    const secret = text(issued.body, "key")
    const keyId = text(issued.body, "id")
    // The second gateway has it cached, and sends with it (the second send takes its fast lane).
    expect((await statusWith(secondGateway, session, { apiKey: secret })).status).toBe(200)
    let accepted = 0
    const sendWith = async () => {
      const reply = await call(secondGateway, "POST", `/sessions/${session.id}/messages`, {
        apiKey: secret,
        json: { to: "+6281234567890", text: "sent with a key about to be revoked" }
      })
      if (reply.status === 202) accepted++
      return reply
    }
    expect((await sendWith()).status).toBe(202)
    expect((await sendWith()).status).toBe(202)
    const revoked = await call(gateway, "DELETE", `/sessions/${session.id}/keys/${keyId}`, { bearer: tenantToken })
    expect(revoked.status).toBe(200)
    const refusedAfter = await refusedAfterMs(sendWith, Date.now(), 2_000)
    expect(refusedAfter).toBeDefined()
    // Well within the cache's second: the broadcast, not the expiry.
    expect(refusedAfter ?? Infinity).toBeLessThan(500)
    expect((await statusWith(secondGateway, session, { apiKey: secret })).status).toBe(401)
    // Every text accepted is queued, and none once it was refused.
    const queue = await call(gateway, "GET", `/sessions/${session.id}/health`, { apiKey: session.key })
    expect(field(queue.body, "messageQueue", "pending")).toBe(accepted)
  })

  it("keeps what it looked up for minutes, yet refuses a key revoked in Postgres alone within a second", async () => {
    const session = await sessions.create("Revoked-Quietly")
    const secret = await issueKey(session, { requestsPerMinute: 100 })
    // Any revocation makes a gateway forget all it cached: the one of the test before must have been read first.
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    for (const base of [gateway, secondGateway]) {
      expect((await statusWith(base, session, { apiKey: secret })).status).toBe(200)
    }
    // A change that takes nothing away (here the key's limit, by hand) moves no revision: both gateways go on with
    // what they looked up, well past a second (a fresh lookup would allow one request a minute).
    await sqlRun((sql) =>
      sql`UPDATE api_keys SET requests_per_minute = 1 WHERE session_id = ${session.id} AND requests_per_minute = 100`
    )
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    for (const base of [gateway, secondGateway, gateway, secondGateway]) {
      const reply = await statusWith(base, session, { apiKey: secret })
      expect(reply.status, JSON.stringify(reply.body)).toBe(200)
    }
    // Revoked by a statement alone, as if its gateway died between the commit and the announcement: both gateways
    // see the credentials' revision move and refuse it within a second.
    await sqlRun((sql) =>
      sql`UPDATE api_keys SET revoked_at = now() WHERE session_id = ${session.id} AND requests_per_minute = 1`
    )
    const revokedAt = Date.now()
    for (const base of [gateway, secondGateway]) {
      const refusedAfter = await refusedAfterMs(() => statusWith(base, session, { apiKey: secret }), revokedAt, 3_000)
      expect(refusedAfter, base).toBeDefined()
      expect(refusedAfter ?? Infinity).toBeLessThan(1_000)
    }
    // The session's own key was never touched.
    expect((await statusWith(secondGateway, session, { apiKey: session.key })).status).toBe(200)
  })
})

/** How long after `since` the gateway at `base` first refused the key (401); undefined if not within `giveUpMs`. */
/** How long after `since` the probe's request was first refused as unauthorized (undefined: not within `giveUpMs`). */
const refusedAfterMs = async (probe: () => Promise<{ readonly status: number }>, since: number, giveUpMs: number) => {
  while (Date.now() - since < giveUpMs) {
    if ((await probe()).status === 401) return Date.now() - since
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return undefined
}

/** Runs a statement against the cluster's database, as an operator would by hand. */
const sqlRun = (statement: (sql: SqlClient.SqlClient) => Effect.Effect<unknown, SqlError>) =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, statement).pipe(
      Effect.provide(Database.layerFromUrl(fixture.cluster.databaseUrl, { maxConnections: 1 }))
    )
  )
