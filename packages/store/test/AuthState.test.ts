import { SqlClient } from "@effect/sql"
import { assert, expect, it, layer } from "@effect/vitest"
import { ShardNumber } from "@wacluster/domain/Shard"
import { ConfigProvider, Deferred, Effect, Exit, Fiber, Layer } from "effect"
import { createSecretKey } from "node:crypto"
import * as AuthCipher from "../src/AuthCipher.js"
import * as AuthState from "../src/AuthState.js"
import { StaleEpoch } from "../src/Errors.js"
import * as ShardFences from "../src/ShardFences.js"
import { seedSession, storeLayer } from "./support.js"

const text = (value: string) => new TextEncoder().encode(value)
const decoded = (values: ReadonlyMap<string, Uint8Array>) =>
  Object.fromEntries([...values].map(([key, value]) => [key, new TextDecoder().decode(value)]))

/** A session whose shard is fenced at epoch 1, and the fence its owner writes with. */
const ownedSession = Effect.gen(function*() {
  const session = yield* seedSession()
  yield* (yield* ShardFences.ShardFences).advance(session.shard, 1)
  return { session, fence: { shard: ShardNumber.make(session.shard), epoch: 1 } }
})

layer(storeLayer("auth_state"), { timeout: 60_000, excludeTestServices: true })("AuthState", (it) => {
  it.effect("values round-trip, encrypted at rest; null deletes", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const auth = yield* AuthState.AuthState
      const { fence, session } = yield* ownedSession
      const creds = JSON.stringify({ noiseKey: "secret-noise-key", registrationId: 42 })

      yield* auth.set(fence, session.id, [
        { key: "creds", value: text(creds) },
        { key: "pre-key-1", value: text("one") },
        { key: "pre-key-2", value: text("two") },
        { key: "empty", value: new Uint8Array(0) }
      ])
      assert.deepStrictEqual(
        decoded(yield* auth.get(session.id, ["creds", "pre-key-1", "pre-key-2", "empty", "missing"])),
        { creds, "pre-key-1": "one", "pre-key-2": "two", empty: "" }
      )

      const rows = yield* sql<{ key: string; value: Uint8Array; epoch: string }>`
        SELECT key, value, epoch FROM auth_state WHERE session_id = ${session.id} AND key = 'creds'`
      const row = rows[0]
      assert.isDefined(row)
      if (row === undefined) return
      const stored = Buffer.from(row.value)
      assert.strictEqual(stored.length, 12 + 16 + text(creds).length)
      assert.isFalse(stored.includes(Buffer.from("secret-noise-key")))
      assert.strictEqual(String(row.epoch), "1")

      // Same plaintext twice gives different ciphertexts (random IV).
      yield* auth.set(fence, session.id, [{ key: "creds", value: text(creds) }])
      const again = yield* sql<{ value: Uint8Array }>`
        SELECT value FROM auth_state WHERE session_id = ${session.id} AND key = 'creds'`
      assert.isFalse(Buffer.from(again[0]?.value ?? new Uint8Array()).equals(stored))

      // Deletes and writes in one call; for a repeated key the last entry wins.
      yield* auth.set(fence, session.id, [
        { key: "pre-key-1", value: null },
        { key: "pre-key-2", value: text("stale") },
        { key: "pre-key-2", value: text("fresh") },
        { key: "pre-key-3", value: null }
      ])
      assert.deepStrictEqual(
        decoded(yield* auth.get(session.id, ["creds", "pre-key-1", "pre-key-2", "pre-key-3"])),
        { creds, "pre-key-2": "fresh" }
      )

      yield* auth.clear(session.id)
      assert.strictEqual((yield* auth.get(session.id, ["creds", "pre-key-2"])).size, 0)
    }))

  it.effect("getAll loads every key of one session, decrypted, and nothing of another", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const auth = yield* AuthState.AuthState
      const a = yield* ownedSession
      const b = yield* ownedSession
      assert.strictEqual((yield* auth.getAll(a.session.id)).size, 0)

      yield* auth.set(a.fence, a.session.id, [
        { key: "creds", value: text("A's credentials") },
        { key: "pre-key/1", value: text("one") },
        { key: "session/628123.0", value: new Uint8Array([0, 255, 1]) },
        { key: "gone", value: text("soon deleted") }
      ])
      yield* auth.set(a.fence, a.session.id, [{ key: "gone", value: null }])
      yield* auth.set(b.fence, b.session.id, [{ key: "creds", value: text("B's credentials") }])

      const all = yield* auth.getAll(a.session.id)
      assert.deepStrictEqual(
        decoded(new Map([...all].filter(([key]) => key !== "session/628123.0"))),
        { creds: "A's credentials", "pre-key/1": "one" }
      )
      assert.deepStrictEqual([...(all.get("session/628123.0") ?? [])], [0, 255, 1])
      assert.deepStrictEqual(decoded(yield* auth.getAll(b.session.id)), { creds: "B's credentials" })

      // One row that does not decrypt fails the whole load instead of silently dropping that key.
      yield* sql`UPDATE auth_state SET value = set_byte(value, 30, get_byte(value, 30) # 1)
        WHERE session_id = ${a.session.id} AND key = 'pre-key/1'`
      const error = yield* Effect.flip(auth.getAll(a.session.id))
      assert.strictEqual(error._tag, "AuthDecryptError")
      assert.deepInclude(error, { key: "pre-key/1" })
    }))

  it.effect("a tampered row, or one moved to another key or session, does not decrypt", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const auth = yield* AuthState.AuthState
      const a = yield* ownedSession
      const b = yield* ownedSession
      yield* auth.set(a.fence, a.session.id, [{ key: "creds", value: text("A's credentials") }])
      yield* auth.set(b.fence, b.session.id, [{ key: "creds", value: text("B's credentials") }])

      // Moved to another key of the same session.
      yield* sql`INSERT INTO auth_state (session_id, key, value, epoch)
        SELECT session_id, 'copied', value, epoch FROM auth_state WHERE session_id = ${a.session.id} AND key = 'creds'`
      const moved = yield* Effect.flip(auth.get(a.session.id, ["copied"]))
      assert.strictEqual(moved._tag, "AuthDecryptError")

      // Copied over another session's row.
      yield* sql`UPDATE auth_state SET value = (
          SELECT value FROM auth_state WHERE session_id = ${a.session.id} AND key = 'creds')
        WHERE session_id = ${b.session.id} AND key = 'creds'`
      const copied = yield* Effect.flip(auth.get(b.session.id, ["creds"]))
      assert.strictEqual(copied._tag, "AuthDecryptError")
      expect(copied.message).toMatch(/does not decrypt/)

      // One flipped bit in the ciphertext.
      yield* sql`UPDATE auth_state SET value = set_byte(value, 30, get_byte(value, 30) # 1)
        WHERE session_id = ${a.session.id} AND key = 'creds'`
      assert.strictEqual((yield* Effect.flip(auth.get(a.session.id, ["creds"])))._tag, "AuthDecryptError")
    }))

  it.effect("writes with a stale epoch change nothing", () =>
    Effect.gen(function*() {
      const auth = yield* AuthState.AuthState
      const { fence, session } = yield* ownedSession
      yield* auth.set(fence, session.id, [{ key: "creds", value: text("v1") }])
      yield* (yield* ShardFences.ShardFences).advance(session.shard, 2)

      const error = yield* Effect.flip(
        auth.set(fence, session.id, [{ key: "creds", value: null }, { key: "other", value: text("x") }])
      )
      assert.instanceOf(error, StaleEpoch)
      assert.instanceOf(yield* Effect.flip(auth.clear(session.id, fence)), StaleEpoch)
      assert.deepStrictEqual(decoded(yield* auth.get(session.id, ["creds", "other"])), { creds: "v1" })

      yield* auth.clear(session.id, { ...fence, epoch: 2 })
      assert.strictEqual((yield* auth.get(session.id, ["creds"])).size, 0)
    }))

  it.effect("a write runs to the end once started, even when its caller is interrupted meanwhile", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const auth = yield* AuthState.AuthState
      const { fence, session } = yield* ownedSession
      // Another transaction holds the shard's fence row, so the write (which reads it FOR SHARE) waits.
      const locked = yield* Deferred.make<void>()
      const unlock = yield* Deferred.make<void>()
      const holder = yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`SELECT 1 FROM shard_fences WHERE shard = ${session.shard} FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(unlock)
      })).pipe(Effect.fork)
      yield* Deferred.await(locked)
      const writer = yield* auth.set(fence, session.id, [{ key: "creds", value: text("paired") }]).pipe(Effect.fork)
      yield* Effect.sleep("200 millis")

      // Interrupting the caller does not cancel the statement (pg_cancel_backend would, and under load it lands
      // on whatever statement the connection runs next): the interruption waits for the write.
      const interrupting = yield* Fiber.interrupt(writer).pipe(Effect.fork)
      yield* Effect.sleep("200 millis")
      assert.isNull(interrupting.unsafePoll())
      yield* Deferred.succeed(unlock, undefined)
      yield* Fiber.join(holder)
      yield* Fiber.join(interrupting)
      assert.deepStrictEqual(decoded(yield* auth.get(session.id, ["creds"])), { creds: "paired" })
    }))

  it.effect("values written under another AUTH_STATE_KEY do not decrypt", () =>
    Effect.gen(function*() {
      const { fence, session } = yield* ownedSession
      yield* (yield* AuthState.AuthState).set(fence, session.id, [{ key: "creds", value: text("x") }])
      const otherKey = "ff".repeat(32)
      const error = yield* AuthState.make.pipe(
        Effect.flatMap((auth) => Effect.flip(auth.get(session.id, ["creds"]))),
        Effect.provide(AuthCipher.layerFromKey(otherKey))
      )
      assert.strictEqual(error._tag, "AuthDecryptError")
    }))
})

it.effect("AUTH_STATE_KEY must be 64 hexadecimal characters", () =>
  Effect.gen(function*() {
    const build = (key: string) =>
      Layer.build(AuthCipher.layerConfig).pipe(
        Effect.scoped,
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["AUTH_STATE_KEY", key]]))),
        Effect.exit
      )
    const short = yield* build("abcd")
    assert.isTrue(Exit.isFailure(short))
    expect(String(Exit.isFailure(short) ? short.cause : "")).toMatch(
      /AUTH_STATE_KEY must be 64 hexadecimal characters \(32 bytes\), got 4 characters/
    )
    assert.isTrue(Exit.isFailure(yield* build("zz".repeat(32))))
    assert.isTrue(Exit.isSuccess(yield* build("Ab".repeat(32))))
  }))

it.effect("every value gets its own IV, also across refills of the IV pool, and decrypts", () =>
  Effect.gen(function*() {
    const cipher = AuthCipher.make(createSecretKey(Buffer.from("ab".repeat(32), "hex")))
    const ivs = new Set<string>()
    // The pool holds 341 IVs: 2,000 values span several refills.
    for (let i = 0; i < 2_000; i++) {
      const stored = yield* cipher.encrypt("sess_a", `pre-key-${i}`, text("the same plaintext"))
      ivs.add(Buffer.from(stored.subarray(0, 12)).toString("hex"))
      const plain = yield* cipher.decrypt("sess_a", `pre-key-${i}`, stored)
      assert.strictEqual(new TextDecoder().decode(plain), "the same plaintext")
    }
    assert.strictEqual(ivs.size, 2_000)
  }))
