/**
 * The errors the store raises. They are Schema errors because they travel: a node may report a `StaleEpoch`
 * in a NATS reply, and `StoreError` keeps the driver's failure in `cause` for logs.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { type Cause, Effect, ParseResult, Predicate, Schema } from "effect"

/** Postgres failed, or a row did not match its schema. The foreign failure is in `cause`. */
export class StoreError extends Schema.TaggedError<StoreError>("@wacluster/store/StoreError")("StoreError", {
  message: Schema.String,
  cause: Schema.Defect
}) {}

/**
 * A write carried a shard epoch older than the shard's fence: another node has taken the shard since.
 * `current` is null when the shard has never been fenced (the writer skipped `ShardFences.advance`).
 */
export class StaleEpoch extends Schema.TaggedError<StaleEpoch>("@wacluster/store/StaleEpoch")("StaleEpoch", {
  shard: Schema.Number,
  epoch: Schema.Number,
  current: Schema.NullOr(Schema.Number)
}) {
  override get message(): string {
    return this.current === null
      ? `shard ${this.shard} has no fence: call ShardFences.advance after acquiring its lease`
      : `shard ${this.shard} is fenced at epoch ${this.current}; a write with epoch ${this.epoch} is stale`
  }
}

/** The process was started with a different `SHARDS` than the cluster's database records. */
export class ShardsMismatch extends Schema.TaggedError<ShardsMismatch>("@wacluster/store/ShardsMismatch")(
  "ShardsMismatch",
  { stored: Schema.Number, configured: Schema.Number }
) {
  override get message(): string {
    return `SHARDS is fixed for the life of a cluster: the database says ${this.stored}, ` +
      `this process was started with ${this.configured}`
  }
}

const isStoreFailure = (error: unknown): error is SqlError | ParseResult.ParseError =>
  Predicate.isTagged(error, "SqlError") || ParseResult.isParseError(error)

/**
 * Turns driver and decoding failures into a `StoreError` naming the operation; other errors pass through.
 *
 * It also runs the operation to the end once started, even if the caller is interrupted (a session stopping, a
 * request timing out). An interrupted query is cancelled with `pg_cancel_backend(pid)`, which @effect/sql-pg sends
 * over another pool connection: under load it runs after the query finished and its connection went back to the
 * pool, and cancels whatever statement runs there next — seen as lost auth-state writes ("canceling statement due
 * to user request") while a thousand sessions were being linked. Our statements are short; letting them finish is
 * cheaper than that.
 */
export const mapStoreError = (operation: string) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.catchIf(
    Effect.uninterruptible(self),
    (error): error is Extract<E, SqlError | ParseResult.ParseError> => isStoreFailure(error),
    (cause) => Effect.fail(new StoreError({ message: `${operation} failed: ${describe(cause)}`, cause }))
  )

const describe = (cause: SqlError | ParseResult.ParseError): string => {
  if (cause._tag === "ParseError") return cause.message
  const inner = cause.cause
  return Predicate.hasProperty(inner, "message") && typeof inner.message === "string" ? inner.message : cause.message
}

/** For `INSERT … RETURNING` through `SqlSchema.single`: a missing row is a bug, not an expected failure. */
export const orDieNoRow = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.catchIf(
    self,
    (error): error is Extract<E, Cause.NoSuchElementException> => Predicate.isTagged(error, "NoSuchElementException"),
    (error) => Effect.die(error)
  )
