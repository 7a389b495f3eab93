import { SqlClient } from "@effect/sql"
import { assert, expect, layer } from "@effect/vitest"
import { makeApiKeyId } from "@wacluster/domain/Ids"
import { Effect, Option } from "effect"
import { randomBytes } from "node:crypto"
import * as ApiKeys from "../src/ApiKeys.js"
import * as Sessions from "../src/Sessions.js"
import { seedSession, seedTenant, storeLayer } from "./support.js"

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

  it.effect("the credentials' revision moves with every change that takes a credential away, and only then", () =>
    Effect.gen(function*() {
      const keys = yield* ApiKeys.ApiKeys
      const sessions = yield* Sessions.Sessions
      const sql = yield* SqlClient.SqlClient
      const session = yield* seedSession()
      const id = yield* makeApiKeyId
      const newKey = (keyId: typeof id) => ({
        id: keyId,
        sessionId: session.id,
        name: "watched",
        prefix: "p",
        keyHash: randomBytes(32),
        requestsPerMinute: null,
        messagesPerHour: null
      })
      const moved = <A, E, R>(change: Effect.Effect<A, E, R>) =>
        Effect.gen(function*() {
          const before = BigInt(yield* keys.revision)
          yield* change
          return BigInt(yield* keys.revision) > before
        })

      // Nothing is taken away: issuing a key, recording its use, adding a session or a tenant.
      assert.isFalse(yield* moved(keys.create(newKey(id))))
      assert.isFalse(yield* moved(keys.touchLastUsed(id)))
      assert.isFalse(yield* moved(seedSession()))
      const tenant = yield* seedTenant()
      assert.isFalse(yield* moved(sql`UPDATE tenants SET name = 'renamed' WHERE id = ${tenant.id}`))
      // Taken away, by whoever does it: a revocation, a key or a session deleted (its keys with it), a tenant's token
      // replaced or the tenant deleted.
      assert.isTrue(yield* moved(keys.revoke(session.id, id)))
      const second = yield* makeApiKeyId
      yield* keys.create(newKey(second))
      assert.isTrue(yield* moved(sql`DELETE FROM api_keys WHERE id = ${second}`))
      yield* keys.create(newKey(yield* makeApiKeyId))
      assert.isTrue(yield* moved(sessions.delete(session.id)))
      assert.isTrue(yield* moved(sql`UPDATE tenants SET token_hash = ${randomBytes(32)} WHERE id = ${tenant.id}`))
      assert.isTrue(yield* moved(sql`DELETE FROM tenants WHERE id = ${tenant.id}`))
      // A change rolled back moves nothing.
      const third = yield* makeApiKeyId
      const other = yield* seedSession()
      yield* keys.create({ ...newKey(third), sessionId: other.id })
      assert.isFalse(
        yield* moved(
          sql.withTransaction(Effect.zipRight(keys.revoke(other.id, third), Effect.fail("rolled back"))).pipe(
            Effect.ignore
          )
        )
      )
    }))
})
