/**
 * The send fast lane decides, from the raw request, whether to answer a send itself; everything it does not take
 * must reach the ordinary route exactly as the client sent it. The credentials and the router here are stand-ins
 * (what the lane is given is the point); the e2e suites send through the lane on real processes.
 */
import { describe, expect, it } from "@effect/vitest"
import { OwnerUnavailable, Router } from "@wacluster/cluster/Router"
import { ApiKeyId, MessageId, SessionId, TenantId } from "@wacluster/domain/Ids"
import { AcceptedMessage, Caller, type QueueText, RateLimited, SessionUnknown } from "@wacluster/domain/Protocol"
import { DateTime, Effect, Layer } from "effect"
import type { Server } from "node:http"
import type { AddressInfo } from "node:net"
import { Credentials, type KeyCaller } from "../src/Auth.js"
import * as SendFastLane from "../src/http/SendFastLane.js"

const sessionId = SessionId.make("sess_0000000000000000000A")
const otherSessionId = SessionId.make("sess_0000000000000000000B")
const key = `wak_${"a".repeat(43)}`
const otherKey = `wak_${"b".repeat(43)}`
const caller: KeyCaller = {
  tenantId: TenantId.make("ten_0000000000000000000A"),
  sessionId,
  keyId: ApiKeyId.make("key_0000000000000000000A"),
  keyRequestsPerMinute: 600,
  keyMessagesPerHour: null
}
const accepted = new AcceptedMessage({
  messageId: MessageId.make("msg_0000000000000000000A"),
  status: "queued",
  createdAt: DateTime.unsafeMake("2026-12-07T03:00:00.000Z")
})

/** What the lane was given and did, and how the stand-in router answers. */
const makeWorld = () => {
  const world = {
    sent: [] as Array<QueueText>,
    used: [] as Array<string>,
    reply: Effect.succeed(accepted) as Effect.Effect<unknown, unknown>
  }
  const credentials = Layer.succeed(
    Credentials,
    Credentials.of({
      tenant: () => Effect.dieMessage("the lane never looks up a tenant"),
      apiKey: () => Effect.dieMessage("the lane never looks up a key"),
      cachedApiKey: (given) =>
        given === key ? caller : given === otherKey ? { ...caller, sessionId: otherSessionId } : undefined,
      recordUse: (keyId) => Effect.sync(() => world.used.push(keyId)),
      noteUse: (keyId) => void world.used.push(keyId)
    })
  )
  const router = Layer.succeed(
    Router,
    Router.of({
      send: (command) => {
        world.sent.push(command as QueueText)
        return world.reply as Effect.Effect<never, never>
      },
      sendThen: (command, done) => {
        world.sent.push(command as QueueText)
        Effect.runFork(world.reply as Effect.Effect<never, never>).addObserver(done)
      }
    })
  )
  return { world, layer: Layer.merge(credentials, router) }
}

/** The lane in front of an "ordinary route" that echoes what reached it. */
const serve = (layer: Layer.Layer<Credentials | Router>) =>
  Effect.gen(function*() {
    const lane = yield* SendFastLane.make.pipe(Effect.provide(layer))
    const server: Server = SendFastLane.server(lane)
    server.on("request", (request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        response.writeHead(299, { "content-type": "application/json" })
        response.end(JSON.stringify({ ordinary: true, url: request.url, body: Buffer.concat(chunks).toString() }))
      })
    })
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
      () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
    )
    const { port } = server.address() as AddressInfo
    return `http://127.0.0.1:${port}`
  })

const call = (url: string, init: RequestInit) =>
  Effect.promise(async () => {
    const response = await fetch(url, init)
    return { status: response.status, headers: response.headers, json: await response.json() as unknown }
  })

const post = (
  base: string,
  body: string,
  headers: Record<string, string> = {},
  path = `/sessions/${sessionId}/messages`
) =>
  call(`${base}${path}`, {
    method: "POST",
    headers: { "x-api-key": key, "content-type": "application/json", ...headers },
    body
  })

const text = JSON.stringify({ to: "+62 812 3456 7890", text: "hello" })

describe("send fast lane", () => {
  it.scoped("answers a plainly good send itself: 202 with the owner's answer, for the key's caller", () =>
    Effect.gen(function*() {
      const { layer, world } = makeWorld()
      const base = yield* serve(layer)
      const reply = yield* post(base, text)
      expect(reply.status).toBe(202)
      expect(reply.headers.get("content-type")).toBe("application/json")
      expect(reply.json).toEqual({
        messageId: "msg_0000000000000000000A",
        status: "queued",
        createdAt: "2026-12-07T03:00:00.000Z"
      })
      expect(world.sent).toHaveLength(1)
      const [command] = world.sent
      expect(command?._tag).toBe("QueueText")
      expect(command?.sessionId).toBe(sessionId)
      expect(command?.to).toBe("6281234567890@s.whatsapp.net")
      expect(command?.text).toBe("hello")
      expect(command?.idempotencyKey).toMatch(/^gateway:/)
      expect(command?.caller).toEqual(
        new Caller({ keyId: caller.keyId, requestsPerMinute: 600, messagesPerHour: null })
      )
      expect(world.used).toEqual([caller.keyId])

      yield* post(base, text, { "idempotency-key": "order-17" })
      expect(world.sent[1]?.idempotencyKey).toBe("client:order-17")
    }))

  it.scoped("answers the route's failures as the ordinary route does: 429 with its headers, 404, 503", () =>
    Effect.gen(function*() {
      const { layer, world } = makeWorld()
      const base = yield* serve(layer)
      world.reply = Effect.fail(
        new RateLimited({
          sessionId,
          kind: "messages",
          scope: "key",
          limit: 100,
          windowSeconds: 3600,
          retryAfterMs: 1500,
          resetMs: 36_000
        })
      )
      const limited = yield* post(base, text)
      expect(limited.status).toBe(429)
      expect(limited.headers.get("retry-after")).toBe("2")
      expect(limited.headers.get("ratelimit-limit")).toBe("100")
      expect(limited.headers.get("ratelimit-policy")).toBe("100;w=3600")
      expect(limited.json).toMatchObject({ error: { code: "rate_limited" } })

      world.reply = Effect.fail(new SessionUnknown({ sessionId }))
      const unknown = yield* post(base, text)
      expect([unknown.status, unknown.json]).toEqual([
        404,
        { error: { code: "not_found", message: `no session ${sessionId} for these credentials` } }
      ])

      world.reply = Effect.fail(new OwnerUnavailable({ sessionId, shard: 3, attempts: 4, lastError: "none" }))
      const away = yield* post(base, text)
      expect([away.status, away.headers.get("retry-after")]).toEqual([503, "2"])
    }))

  it.scoped("leaves every other request to the ordinary route, body and all", () =>
    Effect.gen(function*() {
      const { layer, world } = makeWorld()
      const base = yield* serve(layer)
      const ordinary = { ordinary: true, url: `/sessions/${sessionId}/messages`, body: text }
      // A key this gateway holds no answer for, another session's key, a tenant token.
      expect((yield* post(base, text, { "x-api-key": `wak_${"c".repeat(43)}` })).json).toEqual(ordinary)
      expect((yield* post(base, text, { "x-api-key": otherKey })).json).toEqual(ordinary)
      const bearer = yield* call(`${base}/sessions/${sessionId}/messages`, {
        method: "POST",
        headers: { authorization: "Bearer wat_x", "content-type": "application/json" },
        body: text
      })
      expect(bearer.json).toEqual(ordinary)
      // Not JSON, a query string, another route, another method.
      expect((yield* post(base, text, { "content-type": "text/plain" })).json).toEqual(ordinary)
      const query = `/sessions/${sessionId}/messages?x=1`
      expect((yield* post(base, text, {}, query)).json).toEqual({ ...ordinary, url: query })
      const other = `/sessions/${sessionId}/reconnect`
      expect((yield* post(base, text, {}, other)).json).toEqual({ ...ordinary, url: other })
      const list = yield* call(`${base}/sessions/${sessionId}/messages`, { headers: { "x-api-key": key } })
      expect(list.json).toEqual({ ...ordinary, body: "" })
      // No declared length (a streamed body).
      const streamed = yield* call(`${base}/sessions/${sessionId}/messages`, {
        method: "POST",
        headers: { "x-api-key": key, "content-type": "application/json" },
        body: new Blob([text]).stream(),
        duplex: "half"
      } as RequestInit)
      expect(streamed.json).toEqual(ordinary)
      expect(world.sent).toHaveLength(0)
    }))

  it.scoped("hands a body that does not decode to the ordinary route as it was read, for its 400", () =>
    Effect.gen(function*() {
      const { layer, world } = makeWorld()
      const base = yield* serve(layer)
      for (
        const body of [
          "{\"to\": ",
          JSON.stringify({ to: "12", text: "hi" }),
          JSON.stringify({ to: 1 }),
          "é".repeat(5000)
        ]
      ) {
        expect((yield* post(base, body)).json).toEqual({
          ordinary: true,
          url: `/sessions/${sessionId}/messages`,
          body
        })
      }
      const badKey = yield* post(base, text, { "idempotency-key": "k".repeat(256) })
      expect(badKey.json).toMatchObject({ ordinary: true, body: text })
      expect(world.sent).toHaveLength(0)
    }))
})
