/**
 * The durable outbound queue. A text a session is asked to send is a `messages` row (direction outbound) with
 * status `queued` from the moment it is accepted; the session's actor sends the queued rows oldest first and moves
 * each to `sent` (then receipts move it to `delivered` and `read`) or to `failed` with a reason. Nothing lives only
 * in memory: a node that dies leaves the queue in Postgres, and the shard's next owner sends it.
 *
 * WhatsApp's message id is chosen before the first attempt and stored with the row: an attempt that reached
 * WhatsApp but whose `sent` was never recorded (the node died in between) is repeated under the same id, which
 * WhatsApp and the recipient's phone treat as the same message.
 *
 * Every write is fenced by the shard epoch, like every other write a session makes.
 *
 * Texts are accepted by group commit: what a node's sessions queue while the previous statement runs goes to Postgres
 * in the next one, one row per text and each row fenced on its own. A session waits for its text's row before it
 * takes its next command, so its texts never share a statement and keep their order. A statement that would carry
 * only a few texts waits OUTBOX_LINGER for more first: at a moderate rate each statement (and each wake-up of Postgres
 * and of the node for it) is shared by several texts rather than paid by one.
 */
import { SqlClient } from "@effect/sql"
import { MessageId, SessionId } from "@wacluster/domain/Ids"
import * as Mailbox from "@wacluster/domain/Mailbox"
import { withHotSpan } from "@wacluster/domain/Spans"
import { Config, Context, Duration, Effect, Exit, Layer, Option, Schema } from "effect"
import { mapStoreError, type StaleEpoch, StoreError } from "./Errors.js"
import * as Fence from "./Fence.js"
import { Int8 } from "./internal/Columns.js"
import * as PreparedConnection from "./PreparedConnection.js"

/** A queued text, as its actor sends it. */
export class QueuedText extends Schema.Class<QueuedText>("@wacluster/store/QueuedText")({
  id: MessageId,
  sessionId: SessionId,
  remoteJid: Schema.String,
  text: Schema.String,
  /** Chosen before the first attempt; null until then. */
  waMessageId: Schema.NullOr(Schema.String),
  createdAt: Schema.DateFromSelf
}) {}

/** The answer to an enqueue: the message as it stands (for a repeated idempotency key, the first one). */
export class Enqueued extends Schema.Class<Enqueued>("@wacluster/store/Enqueued")({
  messageId: MessageId,
  status: Schema.String,
  createdAt: Schema.DateFromSelf,
  /** The idempotency key had been used before: nothing new was queued. */
  repeated: Schema.Boolean
}) {}

export interface NewText {
  readonly id: MessageId
  readonly sessionId: SessionId
  readonly remoteJid: string
  readonly text: string
  readonly idempotencyKey?: string | undefined
}

export interface QueueDepth {
  readonly pending: number
  readonly oldestAt: Date | null
}

export class Outbox extends Context.Tag("@wacluster/store/Outbox")<Outbox, {
  /** Queues a text; with an idempotency key already used for the session, returns that message instead. */
  readonly enqueue: (fence: Fence.Fence, text: NewText) => Effect.Effect<Enqueued, StoreError | StaleEpoch>
  /** Up to `limit` queued texts of the session, oldest first. */
  readonly next: (sessionId: SessionId, limit: number) => Effect.Effect<ReadonlyArray<QueuedText>, StoreError>
  /** Records the WhatsApp id a queued text is (about to be) sent under; kept for every later attempt. */
  readonly assignWaMessageId: (
    fence: Fence.Fence,
    id: MessageId,
    waMessageId: string
  ) => Effect.Effect<void, StoreError | StaleEpoch>
  /** queued → sent. False when it was no longer queued. */
  readonly markSent: (fence: Fence.Fence, id: MessageId) => Effect.Effect<boolean, StoreError | StaleEpoch>
  /** queued → failed, with the reason. False when it was no longer queued. */
  readonly markFailed: (
    fence: Fence.Fence,
    id: MessageId,
    reason: string
  ) => Effect.Effect<boolean, StoreError | StaleEpoch>
  /** Fails every text of the session queued before `before`, with the reason; which. */
  readonly expire: (
    fence: Fence.Fence,
    sessionId: SessionId,
    before: Date,
    reason: string
  ) => Effect.Effect<ReadonlyArray<MessageId>, StoreError | StaleEpoch>
  /** How many texts wait, and since when the oldest. */
  readonly depth: (sessionId: SessionId) => Effect.Effect<QueueDepth, StoreError>
}>() {}

const EnqueuedRow = Schema.Struct({ id: MessageId, status: Schema.String, createdAt: Schema.DateFromSelf })
const QueuedRow = Schema.Struct({
  id: MessageId,
  sessionId: SessionId,
  remoteJid: Schema.String,
  body: Schema.Struct({ text: Schema.String }),
  waMessageId: Schema.NullOr(Schema.String),
  createdAt: Schema.DateFromSelf
})
const DepthRow = Schema.Struct({ pending: Int8, oldestAt: Schema.NullOr(Schema.DateFromSelf) })
const decodeEnqueuedRows = Schema.decodeUnknown(Schema.Array(EnqueuedRow))

/**
 * One statement for a batch: each row is inserted while its shard's fence allows (the fence row held FOR SHARE
 * until the commit, as `Fence.guard` does for one write) and its idempotency key is new; in the batch's order, so
 * the queue's sequence follows acceptance. Prepared once per connection (PreparedConnection).
 */
const insertBatchStatement: PreparedConnection.NamedStatement = {
  name: "outbox_insert_batch",
  text: `INSERT INTO messages (id, session_id, direction, remote_jid, body, status, idempotency_key)
    SELECT x.id, x.session_id, 'outbound', x.remote_jid, jsonb_build_object('text', x.text), 'queued', x.key
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::integer[], $7::bigint[])
      WITH ORDINALITY AS x (id, session_id, remote_jid, text, key, shard, epoch, position)
    WHERE EXISTS (SELECT 1 FROM shard_fences f WHERE f.shard = x.shard AND f.epoch <= x.epoch FOR SHARE)
    ORDER BY x.position
    ON CONFLICT DO NOTHING
    RETURNING id, status, created_at AS "createdAt"`
}

/** Most texts in one statement. */
const BATCH_LIMIT = 500

/** A statement with fewer texts than this waits `linger` for more before it goes. */
const LINGER_BELOW = 8

export interface OutboxOptions {
  /**
   * How long a statement with only a few texts waits for more (zero: never). At 2,000 sends/s offered to two nodes
   * on two cores (an open loop as bench:send's), the whole machine was busy 97 % of the time without it, and 1 / 2 /
   * 4 ms cut its CPU a send by 10 / 16 / 23 % (Postgres's by a third to a half), the p50 moving by −1.3 / −0.7 /
   * +0.5 ms. With 3 ms, bench:send accepted 4,123–4,316 sends/s where it took 3,481–3,486 without, at 0.40–0.43 ms of
   * CPU a send against 0.53–0.55.
   */
  readonly linger: Duration.Duration
}

export const outboxConfig: Config.Config<OutboxOptions> = Config.all({
  linger: Config.duration("OUTBOX_LINGER").pipe(
    Config.withDefault(Duration.millis(3)),
    Config.withDescription(
      "How long a statement of the send queue with fewer than 8 texts waits for more (\"0 millis\": never)"
    )
  )
})

/** The answer to a text still waiting for its statement when the store closes. */
const closing = new StoreError({ message: "Outbox.enqueue failed: the store is closing", cause: null })

/** A text waiting for its statement, and who waits for its answer. */
interface Pending {
  readonly fence: Fence.Fence
  readonly text: NewText
  /** Resumes its caller (once; an answer to a caller that went away goes nowhere). */
  readonly answer: (exit: Exit.Exit<Enqueued, StoreError | StaleEpoch>) => void
}

export const make = Effect.fn("Outbox.make")(function*(options: OutboxOptions) {
  const sql = yield* SqlClient.SqlClient
  // The batch statement's own connection (the writer runs one statement at a time); the rest use the pool.
  const connection = yield* PreparedConnection.make

  /** One text in a statement of its own: what a text the batch did not queue needs (a repeat, a stale epoch). */
  const enqueueOne = (fence: Fence.Fence, text: NewText) =>
    Effect.gen(function*() {
      const inserted = yield* Fence.fenced(sql, fence, (guard) =>
        sql`INSERT INTO messages (id, session_id, direction, remote_jid, body, status, idempotency_key)
          SELECT ${text.id}, ${text.sessionId}, 'outbound', ${text.remoteJid},
            ${JSON.stringify({ text: text.text })}::jsonb, 'queued', ${text.idempotencyKey ?? null}
          WHERE ${guard}
          ON CONFLICT DO NOTHING
          RETURNING id, status, created_at`)
      const row = inserted[0]
      if (row !== undefined) {
        const fresh = yield* Schema.decodeUnknown(EnqueuedRow)(row)
        return new Enqueued(
          { messageId: fresh.id, status: fresh.status, createdAt: fresh.createdAt, repeated: false },
          // Decoded from the row just above.
          { disableValidation: true }
        )
      }
      // Nothing inserted with the fence intact: the idempotency key (or, astronomically unlikely, the id) was taken.
      const first = yield* sql`SELECT id, status, created_at FROM messages
        WHERE session_id = ${text.sessionId} AND idempotency_key = ${text.idempotencyKey ?? null}`.pipe(
        Effect.flatMap(Schema.decodeUnknown(Schema.Array(EnqueuedRow))),
        Effect.map((rows) =>
          Option.fromNullable(rows[0])
        )
      )
      if (Option.isNone(first)) {
        return yield* Effect.dieMessage(`message ${text.id} was neither queued nor a repeat`)
      }
      return new Enqueued({
        messageId: first.value.id,
        status: first.value.status,
        createdAt: first.value.createdAt,
        repeated: true
      })
    }).pipe(mapStoreError("Outbox.enqueue"))

  /**
   * The batch in one statement (insertBatchStatement). A text it did not insert goes through `enqueueOne`, which
   * tells a repeat from a stale epoch; a statement that fails as a whole (one odd row) is retried in halves down to
   * the text that fails, so no text fails for another's sake.
   */
  const insertBatch = (batch: ReadonlyArray<Pending>) =>
    connection.run(insertBatchStatement, [
      batch.map(({ text }) => text.id),
      batch.map(({ text }) => text.sessionId),
      batch.map(({ text }) => text.remoteJid),
      batch.map(({ text }) => text.text),
      batch.map(({ text }) => text.idempotencyKey ?? null),
      batch.map(({ fence }) => fence.shard),
      batch.map(({ fence }) => fence.epoch)
    ]).pipe(Effect.flatMap(decodeEnqueuedRows))

  const answerOne = (item: Pending) =>
    Effect.flatMap(Effect.exit(enqueueOne(item.fence, item.text)), (exit) => Effect.sync(() => item.answer(exit)))

  const writeBatch = (batch: ReadonlyArray<Pending>): Effect.Effect<void> =>
    Effect.gen(function*() {
      const written = yield* Effect.either(insertBatch(batch))
      if (written._tag === "Left") {
        // One odd text fails the whole statement: the halves are written again in order, so the text alone fails
        // (answered by `enqueueOne` with its own error) and the rest still share a few statements.
        if (batch.length === 1) return yield* Effect.forEach(batch, answerOne, { discard: true })
        const half = Math.ceil(batch.length / 2)
        yield* writeBatch(batch.slice(0, half))
        return yield* writeBatch(batch.slice(half))
      }
      const inserted = new Map(written.right.map((row) => [row.id as string, row]))
      const notInserted: Array<Pending> = []
      for (const item of batch) {
        const row = inserted.get(item.text.id)
        if (row === undefined) notInserted.push(item)
        else {
          item.answer(Exit.succeed(
            // Decoded from the row just above.
            new Enqueued({ messageId: row.id, status: row.status, createdAt: row.createdAt, repeated: false }, {
              disableValidation: true
            })
          ))
        }
      }
      yield* Effect.forEach(notInserted, answerOne, { discard: true })
    })

  // Unbounded: a text is refused only by the store closing.
  const pending = Mailbox.make<Pending>(Infinity)
  // A text still waiting when the store closes (the node stopping) is answered: its caller does not hang.
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      for (const item of pending.close()) item.answer(Exit.fail(closing))
    })
  )
  /** The texts taken for a statement, with what came while it lingered. */
  const lingered = (first: ReadonlyArray<Pending>): Effect.Effect<ReadonlyArray<Pending>> =>
    Duration.isZero(options.linger) || first.length >= LINGER_BELOW
      ? Effect.succeed(first)
      : Effect.sleep(options.linger).pipe(
        Effect.map(() => [...first, ...pending.pollUpTo(BATCH_LIMIT - first.length)])
      )
  // A statement once begun runs to its end (see mapStoreError): a stopping node waits for it, not for new texts. Its
  // linger is part of it: texts taken out of the queue are always written (or answered).
  const writer = Effect.uninterruptibleMask((restore) =>
    restore(pending.takeUpTo(BATCH_LIMIT)).pipe(
      Effect.flatMap(lingered),
      Effect.flatMap((batch) =>
        writeBatch(batch).pipe(
          Effect.catchAllCause((cause) =>
            Effect.sync(() => batch.forEach((item) => item.answer(Exit.failCause(cause))))
          )
        )
      )
    )
  )
  // One statement at a time: what arrives while it runs all goes into the next one. Two writers made each
  // statement half as big, and Postgres pays for a statement more than for a row: with one, a node accepted about a
  // quarter more sends a second (send bench, three runs each: 1,318, 1,243 and 1,450/s against 1,047, 1,201 and 953).
  yield* Effect.forkScoped(Effect.forever(writer))

  // Every accepted text passes here: plain calls rather than a generator of effects.
  const enqueue = (fence: Fence.Fence, text: NewText) =>
    Effect.async<Enqueued, StoreError | StaleEpoch>((resume) => {
      if (pending.offer({ fence, text, answer: resume }) !== "queued") resume(Exit.fail(closing))
    }).pipe(withHotSpan("Outbox.enqueue"))

  const next = (sessionId: SessionId, limit: number) =>
    sql`SELECT id, session_id, remote_jid, body, wa_message_id, created_at FROM messages
      WHERE session_id = ${sessionId} AND direction = 'outbound' AND status = 'queued'
      ORDER BY seq
      LIMIT ${limit}`.pipe(
      Effect.flatMap(Schema.decodeUnknown(Schema.Array(QueuedRow))),
      Effect.map((rows) =>
        rows.map((row) =>
          new QueuedText({
            id: row.id,
            sessionId: row.sessionId,
            remoteJid: row.remoteJid,
            text: row.body.text,
            waMessageId: row.waMessageId,
            createdAt: row.createdAt
          })
        )
      ),
      mapStoreError("Outbox.next")
    )

  const assignWaMessageId = (fence: Fence.Fence, id: MessageId, waMessageId: string) =>
    Fence.fenced(sql, fence, (guard) =>
      sql`UPDATE messages SET wa_message_id = ${waMessageId}, updated_at = now()
        WHERE id = ${id} AND status = 'queued' AND ${guard}
        RETURNING 1 AS updated`).pipe(Effect.asVoid, mapStoreError("Outbox.assignWaMessageId"))

  const settle = (fence: Fence.Fence, id: MessageId, status: "sent" | "failed", reason: string | null) =>
    Fence.fenced(
      sql,
      fence,
      (guard) =>
        sql`UPDATE messages SET status = ${status}, error = ${reason}, updated_at = now()
        WHERE id = ${id} AND status = 'queued' AND ${guard}
        RETURNING 1 AS updated`
    ).pipe(Effect.map((rows) => rows.length > 0))

  const expire = (fence: Fence.Fence, sessionId: SessionId, before: Date, reason: string) =>
    Fence.fenced(sql, fence, (guard) =>
      sql`UPDATE messages SET status = 'failed', error = ${reason}, updated_at = now()
        WHERE session_id = ${sessionId} AND direction = 'outbound' AND status = 'queued' AND created_at < ${before}
          AND ${guard}
        RETURNING id`).pipe(
        Effect.map((rows) => rows.map((row) => MessageId.make(String(row.id)))),
        mapStoreError("Outbox.expire")
      )

  const depth = (sessionId: SessionId) =>
    sql`SELECT count(*) AS pending, min(created_at) AS oldest_at FROM messages
      WHERE session_id = ${sessionId} AND direction = 'outbound' AND status = 'queued'`.pipe(
      Effect.flatMap(Schema.decodeUnknown(Schema.Array(DepthRow))),
      Effect.map((rows) => rows[0] ?? { pending: 0, oldestAt: null }),
      mapStoreError("Outbox.depth")
    )

  return Outbox.of({
    enqueue,
    next,
    assignWaMessageId,
    markSent: (fence, id) => settle(fence, id, "sent", null).pipe(mapStoreError("Outbox.markSent")),
    markFailed: (fence, id, reason) => settle(fence, id, "failed", reason).pipe(mapStoreError("Outbox.markFailed")),
    expire,
    depth
  })
})

export const layerWith = (options: OutboxOptions) => Layer.scoped(Outbox, make(options))

export const layer = Layer.unwrapEffect(Effect.map(outboxConfig, layerWith))
