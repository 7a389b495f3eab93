import { SqlClient } from "@effect/sql"
import { assert, layer } from "@effect/vitest"
import { makeApiKeyId, makeMessageId } from "@wacluster/domain/Ids"
import { ShardNumber } from "@wacluster/domain/Shard"
import { Effect, Option } from "effect"
import { randomBytes } from "node:crypto"
import * as ApiKeys from "../src/ApiKeys.js"
import * as AuthState from "../src/AuthState.js"
import * as Messages from "../src/Messages.js"
import * as SessionRuntime from "../src/SessionRuntime.js"
import * as Sessions from "../src/Sessions.js"
import * as ShardFences from "../src/ShardFences.js"
import { seedSession, storeLayer } from "./support.js"

layer(storeLayer("cascade"), { timeout: 60_000, excludeTestServices: true })("Session data", (it) => {
  it.effect("messages are recorded once per id or idempotency key, fenced, and counted by direction", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const messages = yield* Messages.Messages
      // Shards of their own: a session of the next test on this shard would find it at epoch 3.
      const session = yield* seedSession({ shard: 10 })
      yield* (yield* ShardFences.ShardFences).advance(session.shard, 3)
      const fence = { shard: ShardNumber.make(session.shard), epoch: 3 }
      const outbound = {
        id: yield* makeMessageId,
        sessionId: session.id,
        direction: "outbound" as const,
        remoteJid: "628123@s.whatsapp.net",
        body: { type: "text", text: "hi", snake_case_key: [1, 2] },
        status: "queued",
        idempotencyKey: "order-1"
      }
      assert.isTrue(yield* messages.insert(fence, outbound))
      assert.isFalse(yield* messages.insert(fence, outbound))
      assert.isFalse(yield* messages.insert(fence, { ...outbound, id: yield* makeMessageId }))
      assert.isTrue(yield* messages.insert(fence, { ...outbound, id: yield* makeMessageId, idempotencyKey: null }))
      const inbound = { ...outbound, id: yield* makeMessageId, direction: "inbound" as const, idempotencyKey: null }
      assert.isTrue(yield* messages.insert(fence, inbound))
      assert.deepStrictEqual(yield* messages.countBySession(session.id), { sent: 2, received: 1 })

      const [row] = yield* sql<{ body: unknown }>`SELECT body FROM messages WHERE id = ${outbound.id}`
      assert.deepStrictEqual(row?.body, outbound.body)

      const late = { ...outbound, id: yield* makeMessageId }
      const stale = yield* Effect.flip(messages.insert({ ...fence, epoch: 2 }, late))
      assert.strictEqual(stale._tag, "StaleEpoch")
      assert.deepStrictEqual(yield* messages.countBySession(session.id), { sent: 2, received: 1 })
    }))

  it.effect("deleting a session removes its keys, runtime state, auth state and messages", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const sessions = yield* Sessions.Sessions
      const session = yield* seedSession({ shard: 11 })
      const survivor = yield* seedSession({ tenantId: session.tenantId, shard: 12 })
      const fill = (s: Sessions.SessionRecord) =>
        Effect.gen(function*() {
          const f = { shard: ShardNumber.make(s.shard), epoch: 1 }
          yield* (yield* ShardFences.ShardFences).advance(s.shard, 1)
          yield* (yield* ApiKeys.ApiKeys).create({
            id: yield* makeApiKeyId,
            sessionId: s.id,
            name: "k",
            prefix: "p",
            keyHash: randomBytes(32),
            requestsPerMinute: null,
            messagesPerHour: null
          })
          yield* (yield* SessionRuntime.SessionRuntime).save(f, {
            sessionId: s.id,
            status: "connecting",
            reason: "qr_pending",
            connectedAt: null,
            phoneNumber: null,
            lastActivityAt: null,
            messagesSent: 0,
            messagesReceived: 0,
            connectedMs: 0,
            observedMs: 0,
            proxySticky: "Ab12Cd34Ef56"
          })
          yield* (yield* AuthState.AuthState).set(f, s.id, [{ key: "creds", value: new Uint8Array([1]) }])
          yield* (yield* Messages.Messages).insert(f, {
            id: yield* makeMessageId,
            sessionId: s.id,
            direction: "inbound",
            remoteJid: "x@s.whatsapp.net",
            body: {},
            status: "received"
          })
        })
      yield* fill(session)
      yield* fill(survivor)

      const count = (id: string) =>
        sql<{ n: number }>`SELECT
          (SELECT count(*) FROM api_keys WHERE session_id = ${id})
          + (SELECT count(*) FROM session_runtime WHERE session_id = ${id})
          + (SELECT count(*) FROM auth_state WHERE session_id = ${id})
          + (SELECT count(*) FROM messages WHERE session_id = ${id}) AS n`.pipe(
          Effect.map((rows) => Number(rows[0]?.n))
        )
      assert.strictEqual(yield* count(session.id), 4)

      assert.isTrue(yield* sessions.delete(session.id))
      assert.isFalse(yield* sessions.delete(session.id))
      assert.isTrue(Option.isNone(yield* sessions.findById(session.id)))
      assert.strictEqual(yield* count(session.id), 0)
      assert.strictEqual(yield* count(survivor.id), 4)
    }))
})
