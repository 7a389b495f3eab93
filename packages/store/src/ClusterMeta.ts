/**
 * Cluster-wide facts recorded once in Postgres, checked by every process at start.
 */
import { SqlClient, SqlSchema } from "@effect/sql"
import { Context, Effect, Layer, Option, Schema } from "effect"
import { mapStoreError, ShardsMismatch, type StoreError } from "./Errors.js"

export class ClusterMeta extends Context.Tag("@wacluster/store/ClusterMeta")<ClusterMeta, {
  /**
   * Records `shards` if the cluster has no value yet; otherwise fails with `ShardsMismatch` when the stored
   * value differs. Safe when several processes start at once.
   */
  readonly ensureShards: (shards: number) => Effect.Effect<void, ShardsMismatch | StoreError>
}>() {}

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const insertIfAbsent = SqlSchema.void({
    Request: Schema.Int,
    execute: (shards) =>
      sql`INSERT INTO cluster_meta (key, value) VALUES ('shards', ${String(shards)}) ON CONFLICT (key) DO NOTHING`
  })
  // A separate statement: in READ COMMITTED it sees a value another process committed while we waited.
  const stored = SqlSchema.findOne({
    Request: Schema.Void,
    Result: Schema.Struct({ value: Schema.NumberFromString }),
    execute: () => sql`SELECT value FROM cluster_meta WHERE key = 'shards'`
  })

  const ensureShards = (shards: number) =>
    Effect.gen(function*() {
      yield* insertIfAbsent(shards)
      const row = yield* stored(undefined)
      if (Option.isNone(row)) return yield* Effect.dieMessage("cluster_meta has no shards row right after inserting it")
      if (row.value.value !== shards) {
        return yield* new ShardsMismatch({ stored: row.value.value, configured: shards })
      }
    }).pipe(mapStoreError("ClusterMeta.ensureShards"), Effect.withSpan("ClusterMeta.ensureShards"))

  return ClusterMeta.of({ ensureShards })
})

export const layer = Layer.effect(ClusterMeta, make)
