/**
 * The Postgres connection pool. Repositories rely on its name transforms: result columns arrive in camelCase
 * (`created_at` → `createdAt`), and JSON values are left untouched so message bodies keep their own keys.
 * Postgres `bigint` columns arrive as strings (node-postgres default); repositories decode them.
 */
import { PgClient } from "@effect/sql-pg"
import { Config, Duration, Redacted, String } from "effect"

const transforms = {
  transformResultNames: String.snakeToCamel,
  transformQueryNames: String.camelToSnake,
  transformJson: false
} as const

const poolSize = Config.integer("DATABASE_POOL_SIZE").pipe(
  Config.validate({ message: "DATABASE_POOL_SIZE must be at least 1", validation: (n) => n >= 1 }),
  Config.withDefault(10),
  Config.withDescription("Maximum number of Postgres connections in the pool (a node opens one more, for the outbox)")
)

/**
 * How long a query may wait for a connection (a free one from the pool, or a new one opening). Without a bound, a
 * query still waiting when the pool closes is never answered, and a store operation (uninterruptible, see
 * mapStoreError) waiting on it would hold its process's stop up for good.
 */
export const DEFAULT_CONNECT_TIMEOUT = Duration.seconds(10)

const connectTimeout = Config.duration("DATABASE_CONNECT_TIMEOUT").pipe(
  Config.withDefault(DEFAULT_CONNECT_TIMEOUT),
  Config.withDescription("How long a query waits for a Postgres connection before it fails (the caller gets a 503)")
)

/** The pool from config: `DATABASE_URL` (required, secret), `DATABASE_POOL_SIZE` and `DATABASE_CONNECT_TIMEOUT`. */
export const layer = PgClient.layerConfig({
  url: Config.redacted("DATABASE_URL").pipe(
    Config.withDescription("Postgres connection URL, e.g. postgres://user:password@host:5432/wacluster")
  ),
  maxConnections: poolSize,
  connectTimeout,
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
  options: {
    readonly maxConnections?: number
    readonly applicationName?: string
    readonly connectTimeout?: Duration.DurationInput
  } = {}
) =>
  PgClient.layer({
    url: Redacted.isRedacted(url) ? url : Redacted.make(url),
    maxConnections: options.maxConnections ?? 10,
    connectTimeout: options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT,
    applicationName: options.applicationName ?? "wacluster",
    ...transforms
  })
