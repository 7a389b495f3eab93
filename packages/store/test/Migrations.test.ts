import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Database from "../src/Database.js"
import * as Migrations from "../src/Migrations.js"
import { freshDatabase } from "./support.js"

/** Every migration, in order. */
const ALL: ReadonlyArray<readonly [number, string]> = [
  [1, "initial"],
  [2, "proxy_sticky"],
  [3, "messages_wa_id"],
  [4, "outbox"],
  [5, "rate_limits"],
  [6, "events"],
  [7, "outbox_order"],
  [8, "webhooks"],
  [9, "credential_revision"]
]

const tables = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ tableName: string }>`
    SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`
  return rows.map((row) => row.tableName)
})

describe("Migrations", () => {
  it.scoped("creates the schema once; running again applies nothing", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase("migrate_twice")
      const db = yield* Layer.build(Database.layerFromUrl(url))
      const first = yield* Migrations.run.pipe(Effect.provide(db))
      const second = yield* Migrations.run.pipe(Effect.provide(db))
      assert.deepStrictEqual(first, ALL)
      assert.deepStrictEqual(second, [])
      assert.deepStrictEqual(yield* tables.pipe(Effect.provide(db)), [
        "api_keys",
        "auth_state",
        "cluster_meta",
        "credential_revision",
        "effect_sql_migrations",
        "events",
        "messages",
        "session_runtime",
        "sessions",
        "shard_fences",
        "tenants",
        "webhook_deliveries",
        "webhook_queue",
        "webhooks"
      ])
    }), { timeout: 60_000 })

  it.scoped(
    "eight processes migrating an empty database at once all succeed, and one applies",
    () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase("migrate_concurrent")
        // Each "process" has its own pool, so they race on separate connections as separate services would.
        const results = yield* Effect.forEach(
          Array.from({ length: 8 }, (_, i) => i),
          (i) =>
            Migrations.run.pipe(
              Effect.provide(Database.layerFromUrl(url, { maxConnections: 2, applicationName: `migrator-${i}` }))
            ),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(results.filter((applied) => applied.length > 0).length, 1)
        assert.deepStrictEqual(results.flat(), ALL)
        const db = yield* Layer.build(Database.layerFromUrl(url))
        assert.include(yield* tables.pipe(Effect.provide(db)), "sessions")
      }),
    { timeout: 60_000 }
  )
})
