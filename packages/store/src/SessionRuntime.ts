/**
 * The live state a session actor persists: status, connection facts and counters. Only the owner of the
 * session's shard writes it (fenced), so a node that takes over a shard resumes from here.
 */
import { SqlClient, SqlSchema } from "@effect/sql"
import { SessionId } from "@wacluster/domain/Ids"
import { SessionReason, SessionStatus } from "@wacluster/domain/Session"
import { Context, Effect, Layer, type Option, Schema } from "effect"
import { mapStoreError, type StaleEpoch, type StoreError } from "./Errors.js"
import * as Fence from "./Fence.js"
import { Int8 } from "./internal/Columns.js"

const Counter = Schema.Int.pipe(Schema.nonNegative())

/** What the actor saves. */
export const RuntimeState = Schema.Struct({
  sessionId: SessionId,
  status: SessionStatus,
  reason: Schema.NullOr(SessionReason),
  connectedAt: Schema.NullOr(Schema.DateFromSelf),
  phoneNumber: Schema.NullOr(Schema.String),
  lastActivityAt: Schema.NullOr(Schema.DateFromSelf),
  messagesSent: Counter,
  messagesReceived: Counter,
  connectedMs: Counter,
  observedMs: Counter,
  /** The sticky token of the session's proxy (its residential exit); null without a proxy. */
  proxySticky: Schema.NullOr(Schema.String)
})
export type RuntimeState = typeof RuntimeState.Type

/** What was saved, with the epoch of the writer and the time of the write. */
export class RuntimeRecord extends Schema.Class<RuntimeRecord>("@wacluster/store/RuntimeRecord")({
  sessionId: SessionId,
  status: SessionStatus,
  reason: Schema.NullOr(SessionReason),
  connectedAt: Schema.NullOr(Schema.DateFromSelf),
  phoneNumber: Schema.NullOr(Schema.String),
  lastActivityAt: Schema.NullOr(Schema.DateFromSelf),
  messagesSent: Int8,
  messagesReceived: Int8,
  connectedMs: Int8,
  observedMs: Int8,
  proxySticky: Schema.NullOr(Schema.String),
  epoch: Int8,
  updatedAt: Schema.DateFromSelf
}) {}

export class SessionRuntime extends Context.Tag("@wacluster/store/SessionRuntime")<SessionRuntime, {
  readonly load: (sessionId: SessionId) => Effect.Effect<Option.Option<RuntimeRecord>, StoreError>
  /** The saved state of several sessions at once (a page of a listing); sessions never saved are absent. */
  readonly loadMany: (
    sessionIds: ReadonlyArray<SessionId>
  ) => Effect.Effect<ReadonlyMap<SessionId, RuntimeRecord>, StoreError>
  /** Replaces the session's runtime state; fails with `StaleEpoch` when the fence has moved past `fence.epoch`. */
  readonly save: (fence: Fence.Fence, state: RuntimeState) => Effect.Effect<void, StoreError | StaleEpoch>
}>() {}

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const load = SqlSchema.findOne({
    Request: SessionId,
    Result: RuntimeRecord,
    execute: (sessionId) => sql`SELECT * FROM session_runtime WHERE session_id = ${sessionId}`
  })

  const loadMany = SqlSchema.findAll({
    Request: Schema.Array(SessionId),
    Result: RuntimeRecord,
    execute: (sessionIds) => sql`SELECT * FROM session_runtime WHERE session_id = ANY(${sessionIds}::text[])`
  })

  const save = (fence: Fence.Fence, state: RuntimeState) =>
    Schema.encode(RuntimeState)(state).pipe(
      Effect.flatMap((s) =>
        Fence.fenced(sql, fence, (guard) =>
          sql`INSERT INTO session_runtime (session_id, status, reason, connected_at, phone_number, last_activity_at,
              messages_sent, messages_received, connected_ms, observed_ms, proxy_sticky, epoch, updated_at)
            SELECT ${s.sessionId}, ${s.status}, ${s.reason}, ${s.connectedAt}, ${s.phoneNumber}, ${s.lastActivityAt},
              ${s.messagesSent}, ${s.messagesReceived}, ${s.connectedMs}, ${s.observedMs}, ${s.proxySticky}, ${fence.epoch}, now()
            WHERE ${guard}
            ON CONFLICT (session_id) DO UPDATE SET
              status = excluded.status, reason = excluded.reason, connected_at = excluded.connected_at,
              phone_number = excluded.phone_number, last_activity_at = excluded.last_activity_at,
              messages_sent = excluded.messages_sent, messages_received = excluded.messages_received,
              connected_ms = excluded.connected_ms, observed_ms = excluded.observed_ms,
              proxy_sticky = excluded.proxy_sticky,
              epoch = excluded.epoch, updated_at = excluded.updated_at
            RETURNING 1 AS saved`)
      ),
      Effect.asVoid
    )

  return SessionRuntime.of({
    load: Effect.fn("SessionRuntime.load")((sessionId) => load(sessionId), mapStoreError("SessionRuntime.load")),
    loadMany: Effect.fn("SessionRuntime.loadMany")(
      (sessionIds) =>
        sessionIds.length === 0
          ? Effect.succeed(new Map())
          : Effect.map(loadMany(sessionIds), (rows) => new Map(rows.map((row) => [row.sessionId, row]))),
      mapStoreError("SessionRuntime.loadMany")
    ),
    save: Effect.fn("SessionRuntime.save")((fence, state) => save(fence, state), mapStoreError("SessionRuntime.save"))
  })
})

export const layer = Layer.effect(SessionRuntime, make)
