/**
 * Per-session API keys. Only a hash of each key is stored; `prefix` (the key's first characters) lets a
 * tenant recognise a key in listings.
 */
import { SqlClient, SqlSchema } from "@effect/sql"
import { ApiKeyId, SessionId, TenantId } from "@wacluster/domain/Ids"
import { Context, Effect, Layer, type Option, Schema } from "effect"
import { mapStoreError, orDieNoRow, type StoreError } from "./Errors.js"
import { Bytes } from "./internal/Columns.js"

export class ApiKeyRecord extends Schema.Class<ApiKeyRecord>("@wacluster/store/ApiKeyRecord")({
  id: ApiKeyId,
  sessionId: SessionId,
  name: Schema.String,
  prefix: Schema.String,
  requestsPerMinute: Schema.NullOr(Schema.Int),
  messagesPerHour: Schema.NullOr(Schema.Int),
  createdAt: Schema.DateFromSelf,
  lastUsedAt: Schema.NullOr(Schema.DateFromSelf),
  revokedAt: Schema.NullOr(Schema.DateFromSelf)
}) {}

export const NewApiKey = Schema.Struct({
  id: ApiKeyId,
  sessionId: SessionId,
  name: Schema.String,
  prefix: Schema.String,
  keyHash: Bytes,
  /** Requests per minute this key may make; null: only the session's limit applies. */
  requestsPerMinute: Schema.NullOr(Schema.Int.pipe(Schema.positive())),
  /** Texts per hour this key may queue; null: only the session's limit applies. */
  messagesPerHour: Schema.NullOr(Schema.Int.pipe(Schema.positive()))
})
export type NewApiKey = typeof NewApiKey.Type

/** What the gateway needs to authorise a request made with a key. */
export const ActiveApiKey = Schema.Struct({
  id: ApiKeyId,
  sessionId: SessionId,
  tenantId: TenantId,
  name: Schema.String,
  requestsPerMinute: Schema.NullOr(Schema.Int),
  messagesPerHour: Schema.NullOr(Schema.Int)
})
export type ActiveApiKey = typeof ActiveApiKey.Type

export class ApiKeys extends Context.Tag("@wacluster/store/ApiKeys")<ApiKeys, {
  readonly create: (key: NewApiKey) => Effect.Effect<ApiKeyRecord, StoreError>
  /** The key with this hash unless it was revoked, with its session's tenant. */
  readonly findActiveByHash: (hash: Uint8Array) => Effect.Effect<Option.Option<ActiveApiKey>, StoreError>
  /** The session's keys, revoked ones included, oldest first. */
  readonly listBySession: (sessionId: SessionId) => Effect.Effect<ReadonlyArray<ApiKeyRecord>, StoreError>
  /** The session's keys that still work, oldest first. */
  readonly listActiveBySession: (sessionId: SessionId) => Effect.Effect<ReadonlyArray<ApiKeyRecord>, StoreError>
  readonly touchLastUsed: (id: ApiKeyId) => Effect.Effect<void, StoreError>
  /**
   * The credentials' revision: raised by Postgres in the transaction of every change that may take a key or a tenant
   * token away (migration 0009), whoever makes it. A cached credential is good while this has not moved.
   */
  readonly revision: Effect.Effect<string, StoreError>
  /** Marks the key revoked; None when it does not exist or belongs to another session. */
  readonly revoke: (
    sessionId: SessionId,
    id: ApiKeyId
  ) => Effect.Effect<Option.Option<ApiKeyRecord>, StoreError>
}>() {}

const columns =
  "id, session_id, name, prefix, requests_per_minute, messages_per_hour, created_at, last_used_at, revoked_at"

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const returning = sql.literal(columns)

  const create = SqlSchema.single({
    Request: NewApiKey,
    Result: ApiKeyRecord,
    execute: (key) =>
      sql`INSERT INTO api_keys (id, session_id, name, prefix, key_hash, requests_per_minute, messages_per_hour)
        VALUES (${key.id}, ${key.sessionId}, ${key.name}, ${key.prefix}, ${key.keyHash}, ${key.requestsPerMinute},
          ${key.messagesPerHour})
        RETURNING ${returning}`
  })

  const findActiveByHash = SqlSchema.findOne({
    Request: Bytes,
    Result: ActiveApiKey,
    execute: (hash) =>
      sql`SELECT k.id, k.session_id, s.tenant_id, k.name, k.requests_per_minute, k.messages_per_hour
        FROM api_keys k JOIN sessions s ON s.id = k.session_id
        WHERE k.key_hash = ${hash} AND k.revoked_at IS NULL`
  })

  const listBySession = SqlSchema.findAll({
    Request: SessionId,
    Result: ApiKeyRecord,
    execute: (sessionId) =>
      sql`SELECT ${returning} FROM api_keys WHERE session_id = ${sessionId} ORDER BY created_at, id`
  })

  const listActiveBySession = SqlSchema.findAll({
    Request: SessionId,
    Result: ApiKeyRecord,
    execute: (sessionId) =>
      sql`SELECT ${returning} FROM api_keys WHERE session_id = ${sessionId} AND revoked_at IS NULL
        ORDER BY created_at, id`
  })

  const touchLastUsed = SqlSchema.void({
    Request: ApiKeyId,
    execute: (id) => sql`UPDATE api_keys SET last_used_at = now() WHERE id = ${id}`
  })

  const revoke = SqlSchema.findOne({
    Request: Schema.Struct({ sessionId: SessionId, id: ApiKeyId }),
    Result: ApiKeyRecord,
    execute: ({ id, sessionId }) =>
      sql`UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
        WHERE id = ${id} AND session_id = ${sessionId}
        RETURNING ${returning}`
  })

  return ApiKeys.of({
    create: Effect.fn("ApiKeys.create")((key) => create(key), orDieNoRow, mapStoreError("ApiKeys.create")),
    findActiveByHash: Effect.fn("ApiKeys.findActiveByHash")(
      (hash) => findActiveByHash(hash),
      mapStoreError("ApiKeys.findActiveByHash")
    ),
    listBySession: Effect.fn("ApiKeys.listBySession")(
      (sessionId) => listBySession(sessionId),
      mapStoreError("ApiKeys.listBySession")
    ),
    listActiveBySession: Effect.fn("ApiKeys.listActiveBySession")(
      (sessionId) => listActiveBySession(sessionId),
      mapStoreError("ApiKeys.listActiveBySession")
    ),
    touchLastUsed: Effect.fn("ApiKeys.touchLastUsed")(
      (id) => touchLastUsed(id),
      mapStoreError("ApiKeys.touchLastUsed")
    ),
    revision: sql<{ revision: string }>`SELECT revision::text AS revision FROM credential_revision`.pipe(
      Effect.map((rows) => rows[0]?.revision ?? "0"),
      mapStoreError("ApiKeys.revision")
    ),
    revoke: Effect.fn("ApiKeys.revoke")((sessionId, id) => revoke({ sessionId, id }), mapStoreError("ApiKeys.revoke"))
  })
})

export const layer = Layer.effect(ApiKeys, make)
