import { describe, expect, it } from "@effect/vitest"
import { DateTime, Effect, Either, Exit, Schema } from "effect"
import {
  BadRequest,
  BadRequestJson,
  NotFound,
  NotFoundJson,
  ServiceUnavailable,
  ServiceUnavailableJson
} from "../src/ApiErrors.js"
import {
  makeApiKeyId,
  makeDeliveryId,
  makeEventId,
  makeMessageId,
  makeSessionId,
  makeTenantId,
  makeWebhookId,
  NodeId,
  SessionId
} from "../src/Ids.js"
import { GetStatus, NotOwner, SessionStatusView, SessionUnknown, StatusMetrics } from "../src/Protocol.js"
import { decodeReply, encodeReply, SessionCommandJson } from "../src/ProtocolJson.js"
import { healthOf, SessionName, SessionStatus } from "../src/Session.js"
import { fnv1a32, ShardNumber, shardOf } from "../src/Shard.js"

describe("ids", () => {
  it.effect("are prefixed, 20 base62 characters, and unique", () =>
    Effect.gen(function*() {
      const ids = new Set<string>()
      for (let i = 0; i < 2000; i++) ids.add(yield* makeSessionId)
      expect(ids.size).toBe(2000)
      for (const id of ids) expect(id).toMatch(/^sess_[0-9A-Za-z]{20}$/)
      expect(yield* makeTenantId).toMatch(/^ten_[0-9A-Za-z]{20}$/)
      expect(yield* makeApiKeyId).toMatch(/^key_[0-9A-Za-z]{20}$/)
      expect(yield* makeMessageId).toMatch(/^msg_[0-9A-Za-z]{20}$/)
      expect(yield* makeWebhookId).toMatch(/^wh_[0-9A-Za-z]{20}$/)
      expect(yield* makeDeliveryId).toMatch(/^dlv_[0-9A-Za-z]{20}$/)
      expect(yield* makeEventId).toMatch(/^evt_[0-9A-Za-z]{20}$/)
    }))

  it("refuse what is not an id of their kind, with a message that shows the expected form", () => {
    const decode = Schema.decodeUnknownEither(SessionId)
    for (const bad of ["", "sess_", "sess_short", "ten_00000000000000000000", "sess_0000000000000000000!", 42, null]) {
      expect(Either.isLeft(decode(bad))).toBe(true)
    }
    const failure = decode("nope")
    expect(Either.isLeft(failure) && String(failure.left)).toContain("sess_xxxxxxxxxxxxxxxxxxxx")
    expect(Either.isRight(decode("sess_xyz789abcdefghijklmn"))).toBe(true)
  })

  it("node ids are safe for NATS KV keys", () => {
    const decode = Schema.decodeUnknownEither(NodeId)
    expect(Either.isRight(decode("node-1"))).toBe(true)
    for (const bad of ["", "Node-1", "node.1", "node 1", "-node", "a".repeat(64)]) {
      expect(Either.isLeft(decode(bad))).toBe(true)
    }
  })
})

describe("session states", () => {
  it("are exactly the product's four", () => {
    expect(SessionStatus.literals).toEqual(["connecting", "connected", "disconnected", "expired"])
  })

  it("map to health: healthy only when connected", () => {
    expect(healthOf("connected")).toBe("healthy")
    expect(healthOf("connecting")).toBe("degraded")
    expect(healthOf("disconnected")).toBe("unhealthy")
    expect(healthOf("expired")).toBe("unhealthy")
  })

  it("names are trimmed, non-empty and bounded", () => {
    const decode = Schema.decodeUnknownEither(SessionName)
    expect(decode("  Support-Jakarta-Prod ")).toEqual(Either.right("Support-Jakarta-Prod"))
    expect(Either.isLeft(decode("   "))).toBe(true)
    expect(Either.isLeft(decode("x".repeat(101)))).toBe(true)
  })
})

describe("shards", () => {
  it("use FNV-1a 32 (reference vectors) so every process agrees", () => {
    expect(fnv1a32("")).toBe(0x811c9dc5)
    expect(fnv1a32("a")).toBe(0xe40c292c)
    expect(fnv1a32("foobar")).toBe(0xbf9cf968)
  })

  it("spread session ids over all shards", () => {
    const counts = new Array<number>(16).fill(0)
    for (let i = 0; i < 16_000; i++) {
      const shard = shardOf(`sess_${i.toString(36).padStart(20, "0")}`, 16)
      counts[shard] = (counts[shard] ?? 0) + 1
    }
    for (const count of counts) expect(count).toBeGreaterThan(800)
  })
})

describe("NATS protocol", () => {
  const sessionId = SessionId.make("sess_xyz789abcdefghijklmn")

  it.effect("commands round-trip through JSON", () =>
    Effect.gen(function*() {
      const text = yield* Schema.encode(SessionCommandJson)(new GetStatus({ sessionId }))
      expect(JSON.parse(text)).toEqual({ _tag: "GetStatus", sessionId })
      const back = yield* Schema.decodeUnknown(SessionCommandJson)(text)
      expect(back).toBeInstanceOf(GetStatus)
      expect(Either.isLeft(Schema.decodeUnknownEither(SessionCommandJson)("{\"_tag\":\"Explode\"}"))).toBe(true)
    }))

  it.effect("replies carry the command's success or its typed failure", () =>
    Effect.gen(function*() {
      const command = new GetStatus({ sessionId })
      const view = new SessionStatusView({
        sessionId,
        status: "connected",
        connectedAt: DateTime.unsafeMake("2026-03-02T10:30:00Z"),
        health: "healthy",
        metrics: new StatusMetrics({ messagesSent: 1250, messagesReceived: 890, uptime: 99.9 })
      })
      const ok = yield* decodeReply(command, yield* encodeReply(command, Exit.succeed(view)))
      expect(Exit.isSuccess(ok) && ok.value).toEqual(view)
      // The status document encodes to exactly the product's JSON.
      expect(JSON.parse(yield* encodeReply(command, Exit.succeed(view)))).toEqual({
        _tag: "Success",
        value: {
          sessionId,
          status: "connected",
          connectedAt: "2026-03-02T10:30:00.000Z",
          health: "healthy",
          metrics: { messagesSent: 1250, messagesReceived: 890, uptime: 99.9 }
        }
      })

      const unknown = yield* decodeReply(
        command,
        yield* encodeReply(command, Exit.fail(new SessionUnknown({ sessionId })))
      )
      expect(Exit.isFailure(unknown) && String(unknown.cause)).toContain("SessionUnknown")
      const moved = yield* decodeReply(
        command,
        yield* encodeReply(command, Exit.fail(new NotOwner({ shard: ShardNumber.make(3) })))
      )
      expect(Exit.isFailure(moved)).toBe(true)
    }))
})

describe("HTTP errors on the wire", () => {
  it("are { error: { code, message, details? } }", () => {
    expect(Schema.encodeSync(NotFoundJson)(new NotFound({ message: "no session" }))).toEqual({
      error: { code: "not_found", message: "no session" }
    })
    expect(Schema.encodeSync(BadRequestJson)(new BadRequest({ message: "bad city", details: { field: "city" } })))
      .toEqual({
        error: { code: "bad_request", message: "bad city", details: { field: "city" } }
      })
    expect(Schema.encodeSync(ServiceUnavailableJson)(new ServiceUnavailable({ message: "later" }))).toEqual({
      error: { code: "unavailable", message: "later" }
    })
  })
})
