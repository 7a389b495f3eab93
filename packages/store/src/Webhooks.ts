/**
 * A session's webhook endpoints. The signing secret is stored encrypted (the caller encrypts it with AuthCipher);
 * after a rotation the previous secret is kept, and still signs, until `previousSecretUntil`.
 *
 * `enabled` false with a `disabledReason` means the endpoint was turned off because it kept failing: events are still
 * queued for it (nothing is lost) and go out once it is enabled again. Turned off by its tenant (no reason), it gets
 * nothing until it is enabled again.
 */
import { SqlClient, SqlSchema } from "@effect/sql"
import { SessionId, WebhookId } from "@wacluster/domain/Ids"
import { Context, Effect, Layer, Option, Schema } from "effect"
import { mapStoreError, type StoreError } from "./Errors.js"
import { Bytes } from "./internal/Columns.js"

export class WebhookRecord extends Schema.Class<WebhookRecord>("@wacluster/store/WebhookRecord")({
  id: WebhookId,
  sessionId: SessionId,
  url: Schema.String,
  /** The event types it gets; empty: every type. */
  eventTypes: Schema.Array(Schema.String),
  enabled: Schema.Boolean,
  disabledReason: Schema.NullOr(Schema.String),
  secret: Bytes,
  previousSecret: Schema.NullOr(Bytes),
  previousSecretUntil: Schema.NullOr(Schema.DateFromSelf),
  createdAt: Schema.DateFromSelf,
  updatedAt: Schema.DateFromSelf
}) {}

/** What an endpoint's secret is sealed to (AuthCipher's purpose): the gateway seals it, the delivering node opens it. */
export const secretPurpose = (webhookId: WebhookId): string => `webhook:${webhookId}`

export interface NewWebhook {
  readonly id: WebhookId
  readonly sessionId: SessionId
  readonly url: string
  readonly eventTypes: ReadonlyArray<string>
  readonly enabled: boolean
  readonly secret: Uint8Array
}

export interface WebhookChange {
  readonly url?: string | undefined
  readonly eventTypes?: ReadonlyArray<string> | undefined
  readonly enabled?: boolean | undefined
}

/** What the intake needs to queue an event: which endpoints of a session want it. */
export const WebhookTarget = Schema.Struct({
  id: WebhookId,
  sessionId: SessionId,
  eventTypes: Schema.Array(Schema.String)
})
export type WebhookTarget = typeof WebhookTarget.Type

export class Webhooks extends Context.Tag("@wacluster/store/Webhooks")<Webhooks, {
  /**
   * Adds the endpoint unless its session already has `atMost` (None then). Creations for one session take turns on
   * its row, so concurrent ones never end up with more than `atMost` between them.
   */
  readonly create: (webhook: NewWebhook, atMost: number) => Effect.Effect<Option.Option<WebhookRecord>, StoreError>
  /** The session's endpoints, oldest first. */
  readonly list: (sessionId: SessionId) => Effect.Effect<ReadonlyArray<WebhookRecord>, StoreError>
  readonly get: (sessionId: SessionId, id: WebhookId) => Effect.Effect<Option.Option<WebhookRecord>, StoreError>
  /** Only the endpoint, wherever it belongs (the dispatcher). */
  readonly find: (id: WebhookId) => Effect.Effect<Option.Option<WebhookRecord>, StoreError>
  /** Enabling clears the reason it was turned off; disabling by hand records none. */
  readonly update: (
    sessionId: SessionId,
    id: WebhookId,
    change: WebhookChange
  ) => Effect.Effect<Option.Option<WebhookRecord>, StoreError>
  /** A new secret; the current one keeps signing beside it until `previousUntil`. */
  readonly rotateSecret: (
    sessionId: SessionId,
    id: WebhookId,
    secret: Uint8Array,
    previousUntil: Date
  ) => Effect.Effect<Option.Option<WebhookRecord>, StoreError>
  readonly delete: (sessionId: SessionId, id: WebhookId) => Effect.Effect<boolean, StoreError>
  /** The endpoints of these sessions that take events: enabled, or turned off only because they kept failing. */
  readonly targets: (sessionIds: ReadonlyArray<SessionId>) => Effect.Effect<ReadonlyArray<WebhookTarget>, StoreError>
}>() {}

const columns = "id, session_id, url, event_types, enabled, disabled_reason, secret, previous_secret, " +
  "previous_secret_until, created_at, updated_at"

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const returning = sql.literal(columns)
  const textArray = (values: ReadonlyArray<string>) => sql`${values}::text[]`

  const insertBelow = SqlSchema.findOne({
    Request: Schema.Any,
    Result: WebhookRecord,
    execute: ({ atMost, webhook }: { webhook: NewWebhook; atMost: number }) =>
      sql`INSERT INTO webhooks (id, session_id, url, event_types, enabled, secret)
        SELECT ${webhook.id}, ${webhook.sessionId}, ${webhook.url}, ${textArray(webhook.eventTypes)},
          ${webhook.enabled}, ${webhook.secret}
        WHERE (SELECT count(*) FROM webhooks WHERE session_id = ${webhook.sessionId}) < ${atMost}
        RETURNING ${returning}`
  })
  // The count is read by a statement of its own after the session's row is locked: one statement that locked and
  // counted would count from a snapshot taken before it waited for the lock.
  const create = (webhook: NewWebhook, atMost: number) =>
    sql`SELECT 1 FROM sessions WHERE id = ${webhook.sessionId} FOR UPDATE`.pipe(
      Effect.zipRight(insertBelow({ webhook, atMost })),
      sql.withTransaction
    )

  const list = SqlSchema.findAll({
    Request: SessionId,
    Result: WebhookRecord,
    execute: (sessionId) =>
      sql`SELECT ${returning} FROM webhooks WHERE session_id = ${sessionId} ORDER BY created_at, id`
  })

  const get = SqlSchema.findOne({
    Request: Schema.Struct({ sessionId: SessionId, id: WebhookId }),
    Result: WebhookRecord,
    execute: ({ id, sessionId }) =>
      sql`SELECT ${returning} FROM webhooks WHERE id = ${id} AND session_id = ${sessionId}`
  })

  const find = SqlSchema.findOne({
    Request: WebhookId,
    Result: WebhookRecord,
    execute: (id) => sql`SELECT ${returning} FROM webhooks WHERE id = ${id}`
  })

  const update = (sessionId: SessionId, id: WebhookId, change: WebhookChange) => {
    const sets = [
      sql`updated_at = now()`,
      ...(change.url === undefined ? [] : [sql`url = ${change.url}`]),
      ...(change.eventTypes === undefined ? [] : [sql`event_types = ${textArray(change.eventTypes)}`]),
      ...(change.enabled === undefined ? [] : [sql`enabled = ${change.enabled}`, sql`disabled_reason = NULL`])
    ]
    return sql`UPDATE webhooks SET ${sql.csv(sets)} WHERE id = ${id} AND session_id = ${sessionId}
      RETURNING ${returning}`.pipe(
      Effect.flatMap((rows) =>
        rows[0] === undefined
          ? Effect.succeed(Option.none())
          : Effect.map(Schema.decodeUnknown(WebhookRecord)(rows[0]), Option.some)
      )
    )
  }

  const rotateSecret = SqlSchema.findOne({
    Request: Schema.Any,
    Result: WebhookRecord,
    execute: (
      { id, previousUntil, secret, sessionId }: {
        sessionId: SessionId
        id: WebhookId
        secret: Uint8Array
        previousUntil: Date
      }
    ) =>
      sql`UPDATE webhooks SET previous_secret = secret, previous_secret_until = ${previousUntil},
          secret = ${secret}, updated_at = now()
        WHERE id = ${id} AND session_id = ${sessionId}
        RETURNING ${returning}`
  })

  const targets = SqlSchema.findAll({
    Request: Schema.Array(SessionId),
    Result: WebhookTarget,
    execute: (sessionIds) =>
      sql`SELECT id, session_id, event_types FROM webhooks
        WHERE session_id = ANY(${sessionIds}::text[]) AND (enabled OR disabled_reason IS NOT NULL)`
  })

  return Webhooks.of({
    create: Effect.fn("Webhooks.create")(
      (webhook, atMost) => create(webhook, atMost),
      mapStoreError("Webhooks.create")
    ),
    list: Effect.fn("Webhooks.list")((sessionId) => list(sessionId), mapStoreError("Webhooks.list")),
    get: Effect.fn("Webhooks.get")((sessionId, id) => get({ sessionId, id }), mapStoreError("Webhooks.get")),
    find: Effect.fn("Webhooks.find")((id) => find(id), mapStoreError("Webhooks.find")),
    update: Effect.fn("Webhooks.update")(update, mapStoreError("Webhooks.update")),
    rotateSecret: Effect.fn("Webhooks.rotateSecret")(
      (sessionId, id, secret, previousUntil) => rotateSecret({ sessionId, id, secret, previousUntil }),
      mapStoreError("Webhooks.rotateSecret")
    ),
    delete: Effect.fn("Webhooks.delete")(
      (sessionId, id) =>
        Effect.map(
          sql`DELETE FROM webhooks WHERE id = ${id} AND session_id = ${sessionId} RETURNING id`,
          (rows) => rows.length > 0
        ),
      mapStoreError("Webhooks.delete")
    ),
    targets: Effect.fn("Webhooks.targets")(
      (sessionIds) => (sessionIds.length === 0 ? Effect.succeed([]) : targets(sessionIds)),
      mapStoreError("Webhooks.targets")
    )
  })
})

export const layer = Layer.effect(Webhooks, make)
