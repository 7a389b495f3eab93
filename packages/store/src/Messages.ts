/**
 * Message history per session. Inserts are fenced: only the shard's owner records messages.
 */
import { SqlClient, SqlSchema } from "@effect/sql"
import { MessageId, SessionId } from "@wacluster/domain/Ids"
import { Context, Effect, Layer, Option, Schema } from "effect"
import { mapStoreError, orDieNoRow, type StaleEpoch, type StoreError } from "./Errors.js"
import * as Fence from "./Fence.js"
import { Int8 } from "./internal/Columns.js"

export const MessageDirection = Schema.Literal("inbound", "outbound")
export type MessageDirection = typeof MessageDirection.Type

export class MessageRecord extends Schema.Class<MessageRecord>("@wacluster/store/MessageRecord")({
  id: MessageId,
  sessionId: SessionId,
  direction: MessageDirection,
  remoteJid: Schema.String,
  body: Schema.Unknown,
  status: Schema.String,
  error: Schema.NullOr(Schema.String),
  waMessageId: Schema.NullOr(Schema.String),
  idempotencyKey: Schema.NullOr(Schema.String),
  createdAt: Schema.DateFromSelf,
  updatedAt: Schema.DateFromSelf
}) {}

export const NewMessage = Schema.Struct({
  id: MessageId,
  sessionId: SessionId,
  direction: MessageDirection,
  remoteJid: Schema.String,
  /** Stored as jsonb, keys untouched. */
  body: Schema.Unknown,
  status: Schema.String,
  error: Schema.optional(Schema.NullOr(Schema.String)),
  waMessageId: Schema.optional(Schema.NullOr(Schema.String)),
  idempotencyKey: Schema.optional(Schema.NullOr(Schema.String))
})
export type NewMessage = typeof NewMessage.Type

/** A page of a session's history, newest first, with filters. */
export interface MessageQuery {
  readonly limit: number
  /** Only messages older than this one (the last of the previous page). */
  readonly before?: { readonly createdAt: Date; readonly id: MessageId } | undefined
  readonly direction?: MessageDirection | undefined
  readonly remoteJid?: string | undefined
  readonly status?: string | undefined
  /** Created at or after. */
  readonly since?: Date | undefined
  /** Created before. */
  readonly until?: Date | undefined
}

export interface MessageCounts {
  readonly sent: number
  readonly received: number
}

export class Messages extends Context.Tag("@wacluster/store/Messages")<Messages, {
  /**
   * Records a message. False when it was already recorded (same id, or same idempotency key for the session),
   * in which case nothing changed.
   */
  readonly insert: (fence: Fence.Fence, message: NewMessage) => Effect.Effect<boolean, StoreError | StaleEpoch>
  /**
   * A receipt for an outbound message, by WhatsApp's message id. Statuses only move forward
   * (sent → delivered → read); the message it moved, none when no such message exists or it is already at or past
   * `status`.
   */
  readonly recordReceipt: (
    fence: Fence.Fence,
    sessionId: SessionId,
    waMessageId: string,
    status: "delivered" | "read"
  ) => Effect.Effect<Option.Option<MessageId>, StoreError | StaleEpoch>
  /** A page of the session's history (see MessageQuery). */
  readonly list: (sessionId: SessionId, query: MessageQuery) => Effect.Effect<ReadonlyArray<MessageRecord>, StoreError>
  readonly find: (sessionId: SessionId, id: MessageId) => Effect.Effect<Option.Option<MessageRecord>, StoreError>
  /** Outbound (sent) and inbound (received) messages recorded for the session. */
  readonly countBySession: (sessionId: SessionId) => Effect.Effect<MessageCounts, StoreError>
}>() {}

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const insert = (fence: Fence.Fence, message: NewMessage) =>
    Fence.fenced(
      sql,
      fence,
      (guard) =>
        sql`INSERT INTO messages (id, session_id, direction, remote_jid, body, status, error, wa_message_id,
          idempotency_key)
        SELECT ${message.id}, ${message.sessionId}, ${message.direction}, ${message.remoteJid},
          ${JSON.stringify(message.body)}::jsonb, ${message.status}, ${message.error ?? null},
          ${message.waMessageId ?? null}, ${message.idempotencyKey ?? null}
        WHERE ${guard}
        ON CONFLICT DO NOTHING
        RETURNING 1 AS inserted`
    ).pipe(Effect.map((rows) => rows.length > 0))

  const recordReceipt = (fence: Fence.Fence, sessionId: SessionId, waMessageId: string, status: "delivered" | "read") =>
    Fence.fenced(
      sql,
      fence,
      (guard) =>
        sql`UPDATE messages SET status = ${status}, updated_at = now()
        WHERE session_id = ${sessionId} AND wa_message_id = ${waMessageId} AND direction = 'outbound'
          AND status IN ${sql.in(status === "read" ? ["queued", "sent", "delivered"] : ["queued", "sent"])}
          AND ${guard}
        RETURNING id`
    ).pipe(Effect.map((rows) => Option.fromNullable(rows[0]).pipe(Option.map((row) => MessageId.make(String(row.id))))))

  const decodeRows = Schema.decodeUnknown(Schema.Array(MessageRecord))
  const list = (sessionId: SessionId, query: MessageQuery) =>
    sql`SELECT * FROM messages
      WHERE session_id = ${sessionId}
      ${
      query.before === undefined ? sql`` : sql`AND (created_at, id) < (${query.before.createdAt}, ${query.before.id})`
    }
      ${query.direction === undefined ? sql`` : sql`AND direction = ${query.direction}`}
      ${query.remoteJid === undefined ? sql`` : sql`AND remote_jid = ${query.remoteJid}`}
      ${query.status === undefined ? sql`` : sql`AND status = ${query.status}`}
      ${query.since === undefined ? sql`` : sql`AND created_at >= ${query.since}`}
      ${query.until === undefined ? sql`` : sql`AND created_at < ${query.until}`}
      ORDER BY created_at DESC, id DESC
      LIMIT ${query.limit}`.pipe(Effect.flatMap(decodeRows))

  const find = SqlSchema.findOne({
    Request: Schema.Struct({ sessionId: SessionId, id: MessageId }),
    Result: MessageRecord,
    execute: ({ id, sessionId }) => sql`SELECT * FROM messages WHERE session_id = ${sessionId} AND id = ${id}`
  })

  const countBySession = SqlSchema.single({
    Request: SessionId,
    Result: Schema.Struct({ sent: Int8, received: Int8 }),
    execute: (sessionId) =>
      sql`SELECT count(*) FILTER (WHERE direction = 'outbound') AS sent,
          count(*) FILTER (WHERE direction = 'inbound') AS received
        FROM messages WHERE session_id = ${sessionId}`
  })

  return Messages.of({
    insert: Effect.fn("Messages.insert")((fence, message) => insert(fence, message), mapStoreError("Messages.insert")),
    recordReceipt: Effect.fn("Messages.recordReceipt")(
      (fence, sessionId, waMessageId, status) => recordReceipt(fence, sessionId, waMessageId, status),
      mapStoreError("Messages.recordReceipt")
    ),
    list: Effect.fn("Messages.list")((sessionId, query) => list(sessionId, query), mapStoreError("Messages.list")),
    find: Effect.fn("Messages.find")((sessionId, id) => find({ sessionId, id }), mapStoreError("Messages.find")),
    countBySession: Effect.fn("Messages.countBySession")(
      (sessionId) => countBySession(sessionId),
      orDieNoRow,
      mapStoreError("Messages.countBySession")
    )
  })
})

export const layer = Layer.effect(Messages, make)
