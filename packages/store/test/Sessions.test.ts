import { SqlClient } from "@effect/sql"
import { assert, expect, layer } from "@effect/vitest"
import { makeSessionId, makeTenantId, type SessionId } from "@wacluster/domain/Ids"
import { ShardNumber } from "@wacluster/domain/Shard"
import { Effect, Option } from "effect"
import { randomBytes } from "node:crypto"
import * as Sessions from "../src/Sessions.js"
import * as Tenants from "../src/Tenants.js"
import { seedSession, seedTenant, storeLayer } from "./support.js"

layer(storeLayer("sessions"), { timeout: 60_000, excludeTestServices: true })("Tenants and Sessions", (it) => {
  it.effect("a tenant is found by its token hash, and only by it", () =>
    Effect.gen(function*() {
      const tenants = yield* Tenants.Tenants
      const tokenHash = randomBytes(32)
      const id = yield* makeTenantId
      const created = yield* tenants.create({ id, name: "Acme", tokenHash })
      assert.strictEqual(created.id, id)
      assert.instanceOf(created.createdAt, Date)

      const found = yield* tenants.findByTokenHash(Uint8Array.from(tokenHash))
      assert.isTrue(Option.isSome(found))
      assert.strictEqual(Option.getOrThrow(found).name, "Acme")
      assert.deepStrictEqual([...Option.getOrThrow(found).tokenHash], [...tokenHash])
      assert.isTrue(Option.isNone(yield* tenants.findByTokenHash(randomBytes(32))))
      assert.isTrue(Option.isSome(yield* tenants.findById(id)))
    }))

  it.effect("a duplicate token hash is refused", () =>
    Effect.gen(function*() {
      const tenants = yield* Tenants.Tenants
      const tokenHash = randomBytes(32)
      yield* tenants.create({ id: yield* makeTenantId, name: "One", tokenHash })
      const error = yield* Effect.flip(tenants.create({ id: yield* makeTenantId, name: "Two", tokenHash }))
      assert.strictEqual(error._tag, "StoreError")
      expect(error.message).toMatch(/duplicate key/)
    }))

  it.effect("a session round-trips with its branded fields and starts running", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.Sessions
      const tenant = yield* seedTenant()
      const created = yield* seedSession({ tenantId: tenant.id, city: "sao-paulo", shard: 17 })
      assert.strictEqual(created.desiredState, "running")
      assert.strictEqual(created.shard, 17)
      assert.strictEqual(created.city, "sao-paulo")

      const found = Option.getOrThrow(yield* sessions.findById(created.id))
      assert.instanceOf(found, Sessions.SessionRecord)
      assert.deepStrictEqual(found, created)
      assert.isTrue(Option.isNone(yield* sessions.findById(yield* makeSessionId)))
    }))

  it.effect("city, tenant and shard cannot change once the session exists", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const session = yield* seedSession({ city: "jakarta", shard: 3 })
      const other = yield* seedTenant("Other")

      const city = yield* Effect.flip(sql`UPDATE sessions SET city = 'lagos' WHERE id = ${session.id}`)
      expect(String(city.cause)).toMatch(/the city is permanent \(it is jakarta, the update asked for lagos\)/)
      const tenant = yield* Effect.flip(sql`UPDATE sessions SET tenant_id = ${other.id} WHERE id = ${session.id}`)
      expect(String(tenant.cause)).toMatch(/the tenant is permanent/)
      const shard = yield* Effect.flip(sql`UPDATE sessions SET shard = 4 WHERE id = ${session.id}`)
      expect(String(shard.cause)).toMatch(/the shard is permanent/)

      // Other columns still change.
      yield* sql`UPDATE sessions SET name = 'Renamed', city = city WHERE id = ${session.id}`
      const sessions = yield* Sessions.Sessions
      const after = Option.getOrThrow(yield* sessions.findById(session.id))
      assert.strictEqual(after.name, "Renamed")
      assert.strictEqual(after.city, "jakarta")
      assert.strictEqual(after.shard, 3)
    }))

  it.effect("listByTenant pages through the tenant's sessions with a keyset cursor", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.Sessions
      const tenant = yield* seedTenant()
      yield* seedSession() // another tenant's session never shows up
      const created: Array<SessionId> = []
      for (let i = 0; i < 7; i++) created.push((yield* seedSession({ tenantId: tenant.id })).id)

      const seen: Array<SessionId> = []
      let after: Sessions.SessionCursor | undefined = undefined
      for (;;) {
        const page: ReadonlyArray<Sessions.SessionRecord> = yield* sessions.listByTenant(tenant.id, { limit: 3, after })
        if (page.length === 0) break
        assert.isAtMost(page.length, 3)
        for (const record of page) seen.push(record.id)
        const last = page[page.length - 1]
        if (last === undefined) break
        after = { createdAt: last.createdAt, id: last.id }
      }
      // Pages in the order of one whole listing (created_at, then id: sessions made in the same microsecond are
      // ordered by id, not by when they were made), each session once, and exactly the tenant's.
      const whole = yield* sessions.listByTenant(tenant.id, { limit: 100 })
      assert.deepStrictEqual(seen, whole.map((record) => record.id))
      assert.deepStrictEqual([...seen].sort(), [...created].sort())
    }))

  it.effect("listByTenant orders sessions created in the same millisecond by id, without gaps or repeats", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const sessions = yield* Sessions.Sessions
      const tenant = yield* seedTenant()
      const ids = yield* Effect.forEach([1, 2, 3, 4, 5], () => seedSession({ tenantId: tenant.id }))
      yield* sql`UPDATE sessions SET created_at = '2024-01-01T00:00:00.123Z' WHERE tenant_id = ${tenant.id}`
      const first = yield* sessions.listByTenant(tenant.id, { limit: 2 })
      const rest = yield* sessions.listByTenant(tenant.id, {
        limit: 10,
        after: first[1] === undefined ? undefined : { createdAt: first[1].createdAt, id: first[1].id }
      })
      assert.deepStrictEqual(
        [...first, ...rest].map((s) => s.id),
        ids.map((s) => s.id).sort()
      )
    }))

  // Shards above SHARDS so that sessions of other tests (shard = hash mod 256) stay out.
  it.effect("listRunningInShards returns running sessions of the given shards only", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.Sessions
      const a = yield* seedSession({ shard: 1200 })
      const b = yield* seedSession({ shard: 1201 })
      const stopped = yield* seedSession({ shard: 1201 })
      yield* seedSession({ shard: 1202 })
      const updated = yield* sessions.setDesiredState(stopped.id, "stopped")
      assert.strictEqual(Option.getOrThrow(updated).desiredState, "stopped")
      assert.isTrue(Option.getOrThrow(updated).updatedAt >= stopped.updatedAt)

      const running = yield* sessions.listRunningInShards([ShardNumber.make(1200), ShardNumber.make(1201)])
      assert.deepStrictEqual(
        [...running].sort((x, y) => x.id.localeCompare(y.id)),
        [{ id: a.id, shard: 1200 }, { id: b.id, shard: 1201 }].sort((x, y) => x.id.localeCompare(y.id))
      )
      assert.deepStrictEqual(yield* sessions.listRunningInShards([]), [])

      yield* sessions.setDesiredState(stopped.id, "running")
      assert.strictEqual((yield* sessions.listRunningInShards([1201])).length, 2)
      assert.isTrue(Option.isNone(yield* sessions.setDesiredState(yield* makeSessionId, "stopped")))
    }))

  it.effect("the database refuses ids without their prefix", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const error = yield* Effect.flip(
        sql`INSERT INTO tenants (id, name, token_hash) VALUES ('sess_aaaaaaaaaaaaaaaaaaaa', 'x', '\\x00')`
      )
      expect(String(error.cause)).toMatch(/tenants_id_check/)
    }))
})
