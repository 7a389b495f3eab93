/**
 * Schema migrations, applied when a process starts.
 *
 * Several processes (a gateway and N nodes) may start at once against an empty database. The migrator of
 * @effect/sql creates its table outside any lock (a `CREATE TABLE` race fails with a unique violation on
 * pg_type) and only then locks it, so the whole run happens inside one transaction that first takes a
 * transaction-scoped advisory lock. The migrator's own transaction nests as a savepoint on that connection,
 * and the lock is released by the commit.
 */
import { SqlClient } from "@effect/sql"
import { PgMigrator } from "@effect/sql-pg"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Layer } from "effect"
import { migration0001 } from "./internal/migration0001.js"
import { migration0002 } from "./internal/migration0002.js"
import { migration0003 } from "./internal/migration0003.js"
import { migration0004 } from "./internal/migration0004.js"
import { migration0005 } from "./internal/migration0005.js"
import { migration0006 } from "./internal/migration0006.js"
import { migration0007 } from "./internal/migration0007.js"
import { migration0008 } from "./internal/migration0008.js"
import { migration0009 } from "./internal/migration0009.js"

/** Advisory lock key for migrations ("wacl" in ASCII); any process of any version uses the same one. */
const LOCK_KEY = 0x7761636c
const TABLE = "effect_sql_migrations"

// PgMigrator.run would also require FileSystem/Path/CommandExecutor for pg_dump, which we never use.
const migrate = PgMigrator.make({})

const loader = PgMigrator.fromRecord({
  "0001_initial": migration0001,
  "0002_proxy_sticky": migration0002,
  "0003_messages_wa_id": migration0003,
  "0004_outbox": migration0004,
  "0005_rate_limits": migration0005,
  "0006_events": migration0006,
  "0007_outbox_order": migration0007,
  "0008_webhooks": migration0008,
  "0009_credential_revision": migration0009
})

/** Applies pending migrations; returns those it applied (empty when the database was up to date). */
export const run: Effect.Effect<
  ReadonlyArray<readonly [id: number, name: string]>,
  PgMigrator.MigrationError | SqlError,
  SqlClient.SqlClient
> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return yield* sql.withTransaction(Effect.gen(function*() {
    yield* sql`SELECT pg_advisory_xact_lock(${LOCK_KEY})`
    // Same shape as the migrator's table, created under the lock so its own check finds it.
    yield* sql`CREATE TABLE IF NOT EXISTS ${sql(TABLE)} (
      migration_id integer PRIMARY KEY,
      created_at timestamp with time zone NOT NULL DEFAULT now(),
      name text NOT NULL
    )`.withoutTransform
    return yield* migrate({ loader, table: TABLE })
  }))
}).pipe(
  Effect.tap((applied) =>
    applied.length > 0
      ? Effect.logInfo("Applied database migrations").pipe(
        Effect.annotateLogs("migrations", applied.map(([id, name]) => `${id}_${name}`).join(", "))
      )
      : Effect.void
  ),
  Effect.withSpan("Migrations.run")
)

/** Runs the migrations while the layer is built; build it before anything that touches the tables. */
export const layer = Layer.effectDiscard(run)
