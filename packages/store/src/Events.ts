/**
 * The transactional outbox of events: an actor appends the events of a change in the same transaction as the change
 * (and fenced like it), so an event exists exactly when its change was committed. The node holding the shard reads
 * them in order, publishes them to JetStream and deletes them.
 */
import { SqlClient } from "@effect/sql"
import { type EventData, EventType } from "@wacluster/domain/Events"
import { EventId, SessionId, TenantId } from "@wacluster/domain/Ids"
import { Context, Effect, Layer, Schema } from "effect"
import { mapStoreError, type StaleEpoch, type StoreError } from "./Errors.js"
import * as Fence from "./Fence.js"
import { Int8 } from "./internal/Columns.js"

export interface NewEvent {
  readonly id: EventId
  readonly tenantId: TenantId
  readonly type: EventType
  readonly data: EventData
}

export class PendingEvent extends Schema.Class<PendingEvent>("@wacluster/store/PendingEvent")({
  seq: Int8,
  id: EventId,
  tenantId: TenantId,
  sessionId: SessionId,
  type: EventType,
  data: Schema.Unknown,
  createdAt: Schema.DateFromSelf
}) {}

export class Events extends Context.Tag("@wacluster/store/Events")<Events, {
  /** Appends events of a change; call inside the change's transaction. */
  readonly append: (
    fence: Fence.Fence,
    events: ReadonlyArray<NewEvent>
  ) => Effect.Effect<void, StoreError | StaleEpoch>
  /** Appends an event outside any shard's fence (a session deleted by the gateway), for the shard's owner to publish. */
  readonly appendUnfenced: (shard: number, event: NewEvent) => Effect.Effect<void, StoreError>
  /** Up to `limit` unpublished events of these shards, oldest first. */
  readonly pending: (
    shards: ReadonlyArray<number>,
    limit: number
  ) => Effect.Effect<ReadonlyArray<PendingEvent>, StoreError>
  /** Forgets published events. */
  readonly published: (seqs: ReadonlyArray<number>) => Effect.Effect<void, StoreError>
}>() {}

const decodePending = Schema.decodeUnknown(Schema.Array(PendingEvent))

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const insert = (shard: number, event: NewEvent, guard: ReturnType<typeof Fence.guard> | undefined) =>
    sql`INSERT INTO events (id, shard, tenant_id, session_id, type, data)
      SELECT ${event.id}, ${shard}, ${event.tenantId}, ${event.data.sessionId}, ${event.type},
        ${JSON.stringify(event.data)}::jsonb
      ${guard === undefined ? sql`` : sql`WHERE ${guard}`}
      RETURNING seq`

  const append = (fence: Fence.Fence, events: ReadonlyArray<NewEvent>) =>
    Effect.forEach(events, (event) => Fence.fenced(sql, fence, (guard) => insert(fence.shard, event, guard)), {
      discard: true
    }).pipe(mapStoreError("Events.append"))

  return Events.of({
    append,
    appendUnfenced: (shard, event) =>
      insert(shard, event, undefined).pipe(Effect.asVoid, mapStoreError("Events.append")),
    pending: (shards, limit) =>
      sql`SELECT seq, id, tenant_id, session_id, type, data, created_at FROM events
        WHERE shard = ANY(${shards}::integer[])
        ORDER BY seq
        LIMIT ${limit}`.pipe(Effect.flatMap(decodePending), mapStoreError("Events.pending")),
    published: (seqs) =>
      seqs.length === 0
        ? Effect.void
        : sql`DELETE FROM events WHERE seq = ANY(${seqs}::bigint[])`.pipe(
          Effect.asVoid,
          mapStoreError("Events.published")
        )
  })
})

export const layer = Layer.effect(Events, make)
