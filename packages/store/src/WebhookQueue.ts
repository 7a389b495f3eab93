/**
 * What each webhook endpoint is owed, and the log of every attempt to pay it.
 *
 * The intake (any node) queues each event once per endpoint that wants it, with the event's position in the events
 * stream; the node holding the endpoint's shard hands the queue out in that order, one endpoint at a time, and
 * records each attempt fenced by its shard epoch: a node that lost the shard can no longer write its outcome.
 */
import { SqlClient, SqlSchema } from "@effect/sql"
import { DeliveryId, SessionId, TenantId, WebhookId } from "@wacluster/domain/Ids"
import { Context, Effect, Layer, Option, Schema } from "effect"
import { mapStoreError, StaleEpoch, type StoreError } from "./Errors.js"
import * as Fence from "./Fence.js"
import { Int8 } from "./internal/Columns.js"

export interface QueuedEvent {
  readonly webhookId: WebhookId
  readonly shard: number
  readonly eventId: string
  readonly eventType: string
  /** The event's sequence number in WA_EVENTS: the order endpoints get events in. */
  readonly streamSeq: number
  /** The body posted: the event's envelope as published. */
  readonly payload: string
}

export class QueueItem extends Schema.Class<QueueItem>("@wacluster/store/QueueItem")({
  seq: Int8,
  webhookId: WebhookId,
  eventId: Schema.String,
  eventType: Schema.String,
  streamSeq: Int8,
  payload: Schema.String,
  manual: Schema.Boolean,
  attempts: Schema.Int,
  nextAttemptAt: Schema.DateFromSelf
}) {}

/** What became of an attempt: the item is done, due again at a time, or given up on. */
export type AttemptOutcome =
  | { readonly _tag: "delivered" }
  | { readonly _tag: "retry"; readonly at: Date }
  | { readonly _tag: "failed" }

export interface Attempt {
  readonly deliveryId: DeliveryId
  readonly item: QueueItem
  readonly succeeded: boolean
  readonly statusCode: number | null
  readonly latencyMs: number
  readonly error: string | null
  readonly outcome: AttemptOutcome
}

export interface FencedAttempt {
  readonly fence: Fence.Fence
  readonly attempt: Attempt
}

export class DeliveryRecord extends Schema.Class<DeliveryRecord>("@wacluster/store/DeliveryRecord")({
  id: DeliveryId,
  webhookId: WebhookId,
  eventId: Schema.String,
  eventType: Schema.String,
  attempt: Schema.Int,
  manual: Schema.Boolean,
  succeeded: Schema.Boolean,
  statusCode: Schema.NullOr(Schema.Int),
  latencyMs: Schema.Int,
  error: Schema.NullOr(Schema.String),
  attemptedAt: Schema.DateFromSelf
}) {}

export const DisabledEndpoint = Schema.Struct({ sessionId: SessionId, tenantId: TenantId })
export type DisabledEndpoint = typeof DisabledEndpoint.Type

/** An endpoint with work, and the shard it belongs to. */
export const EndpointWork = Schema.Struct({ webhookId: WebhookId, shard: Schema.Int })
export type EndpointWork = typeof EndpointWork.Type

export interface DeliveryPage {
  readonly limit: number
  /** The last delivery of the previous page (newest first). */
  readonly before?: { readonly attemptedAt: Date; readonly id: DeliveryId } | undefined
}

export class WebhookQueue extends Context.Tag("@wacluster/store/WebhookQueue")<WebhookQueue, {
  /** Queues events; one already queued for an endpoint is not queued again. Answers how many were new. */
  readonly enqueue: (events: ReadonlyArray<QueuedEvent>) => Effect.Effect<number, StoreError>
  /** The endpoint's next pending items up to `floor` in the stream, in order. */
  readonly due: (webhookId: WebhookId, floor: number, limit: number) => Effect.Effect<
    ReadonlyArray<QueueItem>,
    StoreError
  >
  /**
   * The enabled endpoints of these shards with pending items in (after, upTo] of the stream; `after` < 0: every
   * pending item up to `upTo`, manual redeliveries included.
   */
  readonly withWork: (shards: ReadonlyArray<number>, after: number, upTo: number) => Effect.Effect<
    ReadonlyArray<EndpointWork>,
    StoreError
  >
  /**
   * Logs attempts and moves their items on, in one transaction: each attempt is written (its log entry and its
   * item's move, both or neither) only while its shard's fence still allows its epoch. Answers, for each attempt,
   * null when it was written, or why not (a newer owner fenced the shard).
   */
  readonly recordAll: (attempts: ReadonlyArray<FencedAttempt>) => Effect.Effect<
    ReadonlyArray<StaleEpoch | null>,
    StoreError
  >
  /** Turns off an endpoint that kept failing (fenced); None when it was already off. */
  readonly disable: (fence: Fence.Fence, webhookId: WebhookId, reason: string) => Effect.Effect<
    Option.Option<DisabledEndpoint>,
    StoreError | StaleEpoch
  >
  /** The endpoint's delivery log, newest first. */
  readonly deliveries: (webhookId: WebhookId, page: DeliveryPage) => Effect.Effect<
    ReadonlyArray<DeliveryRecord>,
    StoreError
  >
  /**
   * Queues the event of a logged delivery again (answers its event id); None when there is no such delivery (or it
   * was pruned).
   */
  readonly redeliver: (webhookId: WebhookId, deliveryId: DeliveryId) => Effect.Effect<Option.Option<string>, StoreError>
  /** Forgets finished items and log entries of these shards older than `before`. */
  readonly prune: (shards: ReadonlyArray<number>, before: Date) => Effect.Effect<void, StoreError>
}>() {}

const itemColumns = "seq, webhook_id, event_id, event_type, stream_seq, payload, manual, attempts, next_attempt_at"
const deliveryColumns =
  "id, webhook_id, event_id, event_type, attempt, manual, succeeded, status_code, latency_ms, error, attempted_at"

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const enqueue = (events: ReadonlyArray<QueuedEvent>) =>
    events.length === 0 ? Effect.succeed(0) : sql`INSERT INTO webhook_queue ${
      sql.insert(events.map((event) => ({
        webhook_id: event.webhookId,
        shard: event.shard,
        event_id: event.eventId,
        event_type: event.eventType,
        stream_seq: event.streamSeq,
        payload: event.payload
      })))
    } ON CONFLICT (webhook_id, event_id) WHERE NOT manual DO NOTHING RETURNING seq`.pipe(
      Effect.map((rows) => rows.length)
    )

  const due = SqlSchema.findAll({
    Request: Schema.Struct({ webhookId: WebhookId, floor: Schema.Number, limit: Schema.Number }),
    Result: QueueItem,
    execute: ({ floor, limit, webhookId }) =>
      sql`SELECT ${sql.literal(itemColumns)} FROM webhook_queue
        WHERE webhook_id = ${webhookId} AND state = 'pending' AND stream_seq <= ${floor}
        ORDER BY stream_seq, seq LIMIT ${limit}`
  })

  const withWork = SqlSchema.findAll({
    Request: Schema.Struct({ shards: Schema.Array(Schema.Number), after: Schema.Number, upTo: Schema.Number }),
    Result: EndpointWork,
    execute: ({ after, shards, upTo }) =>
      after < 0
        ? sql`SELECT w.id AS webhook_id, s.shard FROM webhooks w JOIN sessions s ON s.id = w.session_id
          WHERE s.shard = ANY(${shards}::integer[]) AND w.enabled AND EXISTS (
            SELECT 1 FROM webhook_queue q
            WHERE q.webhook_id = w.id AND q.state = 'pending' AND q.stream_seq <= ${upTo})`
        : sql`SELECT DISTINCT webhook_id, shard FROM webhook_queue
          WHERE shard = ANY(${shards}::integer[]) AND state = 'pending'
            AND stream_seq > ${after} AND stream_seq <= ${upTo}`
  })

  const recordAll = (attempts: ReadonlyArray<FencedAttempt>) =>
    sql.withTransaction(Effect.gen(function*() {
      if (attempts.length === 0) return []
      // The fence rows, held FOR SHARE until the commit: a shard's next owner advancing its fence waits for these
      // writes, or, advanced first, makes them refused here (as Fence.guard does for one write).
      const shards = Array.from(new Set(attempts.map(({ fence }) => fence.shard)))
      const fences = yield* sql<{ shard: number; epoch: unknown }>`SELECT shard, epoch FROM shard_fences
        WHERE shard = ANY(${shards}::integer[]) FOR SHARE`
      const epochs = new Map<number, number>()
      for (const row of fences) epochs.set(row.shard, Number(row.epoch))
      const refused = attempts.map(({ fence }) => {
        const current = epochs.get(fence.shard)
        return current !== undefined && current <= fence.epoch
          ? null
          : new StaleEpoch({ shard: fence.shard, epoch: fence.epoch, current: current ?? null })
      })
      const written = attempts.filter((_, index) => refused[index] === null)
      if (written.length === 0) return refused
      yield* sql`INSERT INTO webhook_deliveries ${
        sql.insert(written.map(({ attempt, fence }) => ({
          id: attempt.deliveryId,
          webhook_id: attempt.item.webhookId,
          shard: fence.shard,
          queue_seq: attempt.item.seq,
          event_id: attempt.item.eventId,
          event_type: attempt.item.eventType,
          attempt: attempt.item.attempts + 1,
          manual: attempt.item.manual,
          succeeded: attempt.succeeded,
          status_code: attempt.statusCode,
          latency_ms: Math.round(attempt.latencyMs),
          error: attempt.error
        })))
      }`
      const seqs = written.map(({ attempt }) => attempt.item.seq)
      const states = written.map(({ attempt }) =>
        attempt.outcome._tag === "retry" ? "pending" : attempt.outcome._tag === "delivered" ? "delivered" : "failed"
      )
      const retryAt = written.map(({ attempt }) =>
        attempt.outcome._tag === "retry" ? attempt.outcome.at.toISOString() : null
      )
      yield* sql`UPDATE webhook_queue q SET attempts = q.attempts + 1, state = x.state,
          next_attempt_at = COALESCE(x.retry_at, q.next_attempt_at),
          finished_at = CASE WHEN x.state = 'pending' THEN NULL ELSE now() END
        FROM unnest(${seqs}::bigint[], ${states}::text[], ${retryAt}::timestamptz[]) AS x (seq, state, retry_at)
        WHERE q.seq = x.seq`
      return refused
    }))

  const disable = (fence: Fence.Fence, webhookId: WebhookId, reason: string) =>
    Fence.fenced(
      sql,
      fence,
      (guard) =>
        sql`UPDATE webhooks w SET enabled = false, disabled_reason = ${reason}, updated_at = now()
        FROM sessions s
        WHERE w.id = ${webhookId} AND w.enabled AND s.id = w.session_id AND ${guard}
        RETURNING w.session_id, s.tenant_id`
    ).pipe(
      Effect.flatMap((rows) =>
        rows[0] === undefined
          ? Effect.succeed(Option.none<DisabledEndpoint>())
          : Effect.map(Schema.decodeUnknown(DisabledEndpoint)(rows[0]), Option.some)
      )
    )

  const deliveries = SqlSchema.findAll({
    Request: Schema.Any,
    Result: DeliveryRecord,
    execute: ({ page, webhookId }: { webhookId: WebhookId; page: DeliveryPage }) =>
      sql`SELECT ${sql.literal(deliveryColumns)} FROM webhook_deliveries
        WHERE webhook_id = ${webhookId}
          ${
        page.before === undefined
          ? sql``
          : sql`AND (attempted_at, id) < (${page.before.attemptedAt}, ${page.before.id})`
      }
        ORDER BY attempted_at DESC, id DESC LIMIT ${page.limit}`
  })

  const redeliver = (webhookId: WebhookId, deliveryId: DeliveryId) =>
    sql<{ eventId: string }>`INSERT INTO webhook_queue (webhook_id, shard, event_id, event_type, stream_seq, payload,
        manual)
      SELECT q.webhook_id, q.shard, q.event_id, q.event_type, q.stream_seq, q.payload, true
      FROM webhook_deliveries d JOIN webhook_queue q ON q.seq = d.queue_seq
      WHERE d.id = ${deliveryId} AND d.webhook_id = ${webhookId}
      RETURNING event_id`.pipe(Effect.map((rows) => Option.fromNullable(rows[0]?.eventId)))

  const prune = (shards: ReadonlyArray<number>, before: Date) =>
    Effect.zipRight(
      sql`DELETE FROM webhook_deliveries WHERE shard = ANY(${shards}::integer[]) AND attempted_at < ${before}`,
      sql`DELETE FROM webhook_queue
        WHERE shard = ANY(${shards}::integer[]) AND state <> 'pending' AND finished_at < ${before}`
    )

  return WebhookQueue.of({
    enqueue: Effect.fn("WebhookQueue.enqueue")(enqueue, mapStoreError("WebhookQueue.enqueue")),
    due: Effect.fn("WebhookQueue.due")(
      (webhookId, floor, limit) => due({ webhookId, floor, limit }),
      mapStoreError("WebhookQueue.due")
    ),
    withWork: Effect.fn("WebhookQueue.withWork")(
      (shards, after, upTo) =>
        shards.length === 0
          ? Effect.succeed([])
          : withWork({ shards, after, upTo }),
      mapStoreError("WebhookQueue.withWork")
    ),
    recordAll: Effect.fn("WebhookQueue.recordAll")(recordAll, mapStoreError("WebhookQueue.recordAll")),
    disable: Effect.fn("WebhookQueue.disable")(disable, mapStoreError("WebhookQueue.disable")),
    deliveries: Effect.fn("WebhookQueue.deliveries")(
      (webhookId, page) => deliveries({ webhookId, page }),
      mapStoreError("WebhookQueue.deliveries")
    ),
    redeliver: Effect.fn("WebhookQueue.redeliver")(redeliver, mapStoreError("WebhookQueue.redeliver")),
    prune: Effect.fn("WebhookQueue.prune")(
      (shards, before) => (shards.length === 0 ? Effect.void : Effect.asVoid(prune(shards, before))),
      mapStoreError("WebhookQueue.prune")
    )
  })
})

export const layer = Layer.effect(WebhookQueue, make)
