/**
 * The fence of each shard: the newest lease epoch any node has claimed for it. See `Fence.ts`.
 */
import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, Option, Schema } from "effect"
import { mapStoreError, type StoreError } from "./Errors.js"
import * as Fence from "./Fence.js"
import { Int8 } from "./internal/Columns.js"

export class ShardFences extends Context.Tag("@wacluster/store/ShardFences")<ShardFences, {
  /**
   * Raises the shard's fence to `epoch` unless it is already higher; true when `epoch` is now the current one.
   * Call it right after acquiring the shard's lease and before any write; on false, the lease is already lost.
   * It waits for fenced writes of the previous owner that are in flight.
   */
  readonly advance: (shard: number, epoch: number) => Effect.Effect<boolean, StoreError>
  /** The shard's fence epoch, if it was ever advanced. */
  readonly current: (shard: number) => Effect.Effect<Option.Option<number>, StoreError>
  /** The highest epoch of any shard (0 when none): new lease epochs must start above it (see EpochFloor). */
  readonly highest: Effect.Effect<number, StoreError>
}>() {}

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const advance = (shard: number, epoch: number) =>
    sql<{ epoch: unknown }>`
      INSERT INTO shard_fences (shard, epoch) VALUES (${shard}, ${epoch})
      ON CONFLICT (shard) DO UPDATE SET epoch = GREATEST(shard_fences.epoch, excluded.epoch)
      RETURNING epoch`.pipe(
      Effect.flatMap((rows) => Schema.decodeUnknown(Schema.Tuple(Schema.Struct({ epoch: Int8 })))(rows)),
      Effect.map(([row]) => row.epoch === epoch),
      mapStoreError("ShardFences.advance"),
      Effect.withSpan("ShardFences.advance", { attributes: { shard, epoch } })
    )

  const current = (shard: number) =>
    Fence.current(sql, shard).pipe(
      Effect.map(Option.fromNullable),
      mapStoreError("ShardFences.current")
    )

  const highest = sql<{ epoch: unknown }>`SELECT COALESCE(MAX(epoch), 0) AS epoch FROM shard_fences`.pipe(
    Effect.flatMap((rows) => Schema.decodeUnknown(Schema.Tuple(Schema.Struct({ epoch: Int8 })))(rows)),
    Effect.map(([row]) => row.epoch),
    mapStoreError("ShardFences.highest")
  )

  return ShardFences.of({ advance, current, highest })
})

export const layer = Layer.effect(ShardFences, make)
