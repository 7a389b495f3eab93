/**
 * The Postgres connection pool. Repositories rely on its name transforms: result columns arrive in camelCase
 * (`created_at` → `createdAt`), and JSON values are left untouched so message bodies keep their own keys.
 * Postgres `bigint` columns arrive as strings (node-postgres default); repositories decode them.
 */
import { PgClient } from "@effect/sql-pg"
import { Config, Redacted, String } from "effect"

const transforms = {
  transformResultNames: String.snakeToCamel,
  transformQueryNames: String.camelToSnake,
  transformJson: false
} as const

const poolSize = Config.integer("DATABASE_POOL_SIZE").pipe(
  Config.validate({ message: "DATABASE_POOL_SIZE must be at least 1", validation: (n) => n >= 1 }),
  Config.withDefault(10),
  Config.withDescription("Maximum number of Postgres connections this process opens")
)

/** The pool from config: `DATABASE_URL` (required, secret) and `DATABASE_POOL_SIZE` (default 10). */
export const layer = PgClient.layerConfig({
  url: Config.redacted("DATABASE_URL").pipe(
    Config.withDescription("Postgres connection URL, e.g. postgres://user:password@host:5432/wacluster")
  ),
  maxConnections: poolSize,
  applicationName: Config.string("DATABASE_APPLICATION_NAME").pipe(
    Config.withDefault("wacluster"),
    Config.withDescription("Shown in pg_stat_activity")
  ),
  transformResultNames: Config.succeed(transforms.transformResultNames),
  transformQueryNames: Config.succeed(transforms.transformQueryNames),
  transformJson: Config.succeed(transforms.transformJson)
})

/** The same pool for an explicit URL (tests, tools). */
export const layerFromUrl = (
  url: string | Redacted.Redacted,
  options: { readonly maxConnections?: number; readonly applicationName?: string } = {}
) =>
  PgClient.layer({
    url: Redacted.isRedacted(url) ? url : Redacted.make(url),
    maxConnections: options.maxConnections ?? 10,
    applicationName: options.applicationName ?? "wacluster",
    ...transforms
  })
