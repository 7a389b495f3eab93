import { assert, expect, layer } from "@effect/vitest"
import { makeApiKeyId } from "@wacluster/domain/Ids"
import { Effect, Option } from "effect"
import { randomBytes } from "node:crypto"
import * as ApiKeys from "../src/ApiKeys.js"
import { seedSession, storeLayer } from "./support.js"

layer(storeLayer("api_keys"), { timeout: 60_000, excludeTestServices: true })("ApiKeys", (it) => {
  it.effect("a key is found by its hash with its session's tenant until it is revoked", () =>
    Effect.gen(function*() {
      const keys = yield* ApiKeys.ApiKeys
      const session = yield* seedSession()
      const keyHash = randomBytes(32)
      const id = yield* makeApiKeyId
      const created = yield* keys.create({
        id,
        sessionId: session.id,
        name: "ci",
        prefix: "wak_live_ab",
        keyHash,
        requestsPerMinute: 50,
        messagesPerHour: null
      })
      assert.strictEqual(created.prefix, "wak_live_ab")
      assert.isNull(created.lastUsedAt)
      assert.isNull(created.revokedAt)

      const active = Option.getOrThrow(yield* keys.findActiveByHash(keyHash))
      assert.deepStrictEqual(active, {
        id,
        sessionId: session.id,
        tenantId: session.tenantId,
        name: "ci",
        requestsPerMinute: 50,
        messagesPerHour: null
      })
      assert.isTrue(Option.isNone(yield* keys.findActiveByHash(randomBytes(32))))

      yield* keys.touchLastUsed(id)
      const [listed] = yield* keys.listBySession(session.id)
      assert.instanceOf(listed?.lastUsedAt, Date)

      // Revoking through another session's path does nothing.
      const other = yield* seedSession()
      assert.isTrue(Option.isNone(yield* keys.revoke(other.id, id)))
      const revoked = Option.getOrThrow(yield* keys.revoke(session.id, id))
      assert.instanceOf(revoked.revokedAt, Date)
      assert.isTrue(Option.isNone(yield* keys.findActiveByHash(keyHash)))
      assert.strictEqual((yield* keys.listBySession(session.id)).length, 1)
      assert.strictEqual((yield* keys.listActiveBySession(session.id)).length, 0)
    }))

  it.effect("a key without a request limit has null, and a second key with the same hash is refused", () =>
    Effect.gen(function*() {
      const keys = yield* ApiKeys.ApiKeys
      const session = yield* seedSession()
      const keyHash = randomBytes(32)
      const key = (name: string) =>
        Effect.map(
          makeApiKeyId,
          (id) => ({
            id,
            sessionId: session.id,
            name,
            prefix: "p",
            keyHash,
            requestsPerMinute: null,
            messagesPerHour: 200
          })
        )
      yield* keys.create(yield* key("a"))
      const found = Option.getOrThrow(yield* keys.findActiveByHash(keyHash))
      assert.isNull(found.requestsPerMinute)
      assert.strictEqual(found.messagesPerHour, 200)
      const error = yield* Effect.flip(keys.create(yield* key("b")))
      expect(error.message).toMatch(/api_keys_key_hash_key/)
    }))
})
