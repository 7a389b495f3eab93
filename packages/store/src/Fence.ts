/**
 * Fenced writes. A node that acquires a shard lease calls `ShardFences.advance(shard, epoch)`; from then on
 * every write made on behalf of that shard carries `{ shard, epoch }` and is rejected with `StaleEpoch` once
 * the shard's fence has moved past the epoch, so a paused or partitioned former owner cannot overwrite the
 * new owner's data.
 *
 * The check and the write happen in one statement: the statement includes `guard` (an EXISTS over the fence
 * row taken `FOR SHARE`), which holds the fence row until the write commits. An `advance` that updates the
 * row therefore either waits for the write to commit or, if it committed first, makes the guard false.
 */
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import type { Fragment } from "@effect/sql/Statement"
import { ShardNumber } from "@wacluster/domain/Shard"
import { Effect, Schema } from "effect"
import { StaleEpoch } from "./Errors.js"
import { Int8 } from "./internal/Columns.js"

/** The shard a write is made for and the lease epoch (NATS KV revision) its writer holds. */
export const Fence = Schema.Struct({
  shard: ShardNumber,
  epoch: Schema.Int.pipe(Schema.nonNegative())
})
export type Fence = typeof Fence.Type

/** A SQL condition that is true while `fence.epoch` is not older than the shard's fence; locks the fence row. */
export const guard = (sql: SqlClient.SqlClient, fence: Fence): Fragment =>
  sql`EXISTS (SELECT 1 FROM shard_fences WHERE shard = ${fence.shard} AND epoch <= ${fence.epoch} FOR SHARE)`

/** The shard's current fence epoch, if it has one. */
export const current = (sql: SqlClient.SqlClient, shard: number): Effect.Effect<number | null, SqlError> =>
  sql<{ epoch: unknown }>`SELECT epoch FROM shard_fences WHERE shard = ${shard}`.pipe(
    Effect.flatMap((rows) =>
      rows[0] === undefined
        ? Effect.succeed(null)
        : Schema.decodeUnknown(Int8)(rows[0].epoch).pipe(Effect.orDie)
    )
  )

/**
 * Runs a write that embeds `guard` and returns at least one row when it wrote. When it returns no rows, the
 * fence is read: a stale epoch fails with `StaleEpoch`; otherwise the write simply had nothing to do (for
 * example `ON CONFLICT DO NOTHING`) and the empty result is returned.
 */
export const fenced = <A, E, R>(
  sql: SqlClient.SqlClient,
  fence: Fence,
  write: (guard: Fragment) => Effect.Effect<ReadonlyArray<A>, E, R>
): Effect.Effect<ReadonlyArray<A>, E | StaleEpoch | SqlError, R> =>
  Effect.flatMap(write(guard(sql, fence)), (rows) => {
    if (rows.length > 0) return Effect.succeed(rows)
    return Effect.flatMap(current(sql, fence.shard), (epoch) =>
      epoch === null || epoch > fence.epoch
        ? Effect.fail(new StaleEpoch({ shard: fence.shard, epoch: fence.epoch, current: epoch }))
        : Effect.succeed(rows))
  })
