/**
 * Session records: the control-plane row of each session (its tenant, permanent city and shard, and the state
 * the tenant asked for). The live state lives in `SessionRuntime`.
 */
import { SqlClient, SqlSchema } from "@effect/sql"
import { SessionId, TenantId } from "@wacluster/domain/Ids"
import { DesiredState } from "@wacluster/domain/Session"
import { ShardNumber } from "@wacluster/domain/Shard"
import { Context, Effect, Layer, type Option, Schema } from "effect"
import { mapStoreError, orDieNoRow, type StoreError } from "./Errors.js"

export class SessionRecord extends Schema.Class<SessionRecord>("@wacluster/store/SessionRecord")({
  id: SessionId,
  tenantId: TenantId,
  name: Schema.String,
  city: Schema.String,
  shard: ShardNumber,
  desiredState: DesiredState,
  /** The session's own rate limits; null: the cluster's defaults. */
  requestsPerMinute: Schema.NullOr(Schema.Int),
  messagesPerHour: Schema.NullOr(Schema.Int),
  createdAt: Schema.DateFromSelf,
  updatedAt: Schema.DateFromSelf
}) {}

export const NewSession = Schema.Struct({
  id: SessionId,
  tenantId: TenantId,
  name: Schema.String,
  city: Schema.String,
  shard: ShardNumber
})
export type NewSession = typeof NewSession.Type

/** Position after which the next page starts: the last record of the previous page. */
export const SessionCursor = Schema.Struct({ createdAt: Schema.DateFromSelf, id: SessionId })
export type SessionCursor = typeof SessionCursor.Type

export const RunningSession = Schema.Struct({ id: SessionId, shard: ShardNumber })
export type RunningSession = typeof RunningSession.Type

export class Sessions extends Context.Tag("@wacluster/store/Sessions")<Sessions, {
  /** Inserts a session that should run. */
  readonly create: (session: NewSession) => Effect.Effect<SessionRecord, StoreError>
  readonly findById: (id: SessionId) => Effect.Effect<Option.Option<SessionRecord>, StoreError>
  /** The tenant's sessions, oldest first, `limit` at a time (ask for one more to learn whether more exist). */
  readonly listByTenant: (
    tenantId: TenantId,
    page: { readonly limit: number; readonly after?: SessionCursor | undefined }
  ) => Effect.Effect<ReadonlyArray<SessionRecord>, StoreError>
  /** The sessions in these shards whose desired state is running: what a node starts after taking shards. */
  readonly listRunningInShards: (
    shards: ReadonlyArray<number>
  ) => Effect.Effect<ReadonlyArray<RunningSession>, StoreError>
  /** Records what the tenant asked for; None when the session does not exist. */
  readonly setDesiredState: (
    id: SessionId,
    state: DesiredState
  ) => Effect.Effect<Option.Option<SessionRecord>, StoreError>
  /** Sets the session's own rate limits (null: the cluster's defaults); None when it does not exist. */
  readonly setRateLimits: (
    id: SessionId,
    limits: { readonly requestsPerMinute: number | null; readonly messagesPerHour: number | null }
  ) => Effect.Effect<Option.Option<SessionRecord>, StoreError>
  /** Renames the session; None when it does not exist. */
  readonly rename: (id: SessionId, name: string) => Effect.Effect<Option.Option<SessionRecord>, StoreError>
  /** Removes the session and, by cascade, its keys, runtime state, auth state and messages. */
  readonly delete: (id: SessionId) => Effect.Effect<boolean, StoreError>
}>() {}

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const create = SqlSchema.single({
    Request: NewSession,
    Result: SessionRecord,
    execute: ({ city, id, name, shard, tenantId }) =>
      sql`INSERT INTO sessions (id, tenant_id, name, city, shard, desired_state)
        VALUES (${id}, ${tenantId}, ${name}, ${city}, ${shard}, 'running')
        RETURNING *`
  })

  const findById = SqlSchema.findOne({
    Request: SessionId,
    Result: SessionRecord,
    execute: (id) => sql`SELECT * FROM sessions WHERE id = ${id}`
  })

  const listByTenant = SqlSchema.findAll({
    Request: Schema.Struct({
      tenantId: TenantId,
      limit: Schema.Int.pipe(Schema.between(1, 1000)),
      after: Schema.optional(SessionCursor)
    }),
    Result: SessionRecord,
    execute: ({ after, limit, tenantId }) =>
      sql`SELECT * FROM sessions
        WHERE tenant_id = ${tenantId}
        ${after === undefined ? sql`` : sql`AND (created_at, id) > (${after.createdAt}, ${after.id})`}
        ORDER BY created_at, id
        LIMIT ${limit}`
  })

  const listRunningInShards = SqlSchema.findAll({
    Request: Schema.Array(Schema.Int),
    Result: RunningSession,
    execute: (shards) =>
      sql`SELECT id, shard FROM sessions
        WHERE desired_state = 'running' AND shard = ANY(${shards}::integer[])
        ORDER BY shard, id`
  })

  const setDesiredState = SqlSchema.findOne({
    Request: Schema.Struct({ id: SessionId, state: DesiredState }),
    Result: SessionRecord,
    execute: ({ id, state }) =>
      sql`UPDATE sessions SET desired_state = ${state}, updated_at = now() WHERE id = ${id} RETURNING *`
  })

  const rename = SqlSchema.findOne({
    Request: Schema.Struct({ id: SessionId, name: Schema.String }),
    Result: SessionRecord,
    execute: ({ id, name }) => sql`UPDATE sessions SET name = ${name}, updated_at = now() WHERE id = ${id} RETURNING *`
  })

  const setRateLimits = SqlSchema.findOne({
    Request: Schema.Struct({
      id: SessionId,
      requestsPerMinute: Schema.NullOr(Schema.Int),
      messagesPerHour: Schema.NullOr(Schema.Int)
    }),
    Result: SessionRecord,
    execute: ({ id, messagesPerHour, requestsPerMinute }) =>
      sql`UPDATE sessions SET requests_per_minute = ${requestsPerMinute}, messages_per_hour = ${messagesPerHour},
          updated_at = now()
        WHERE id = ${id} RETURNING *`
  })

  const delete_ = (id: SessionId) =>
    sql`DELETE FROM sessions WHERE id = ${id} RETURNING id`.pipe(Effect.map((rows) => rows.length > 0))

  return Sessions.of({
    create: Effect.fn("Sessions.create")((session) => create(session), orDieNoRow, mapStoreError("Sessions.create")),
    findById: Effect.fn("Sessions.findById")((id) => findById(id), mapStoreError("Sessions.findById")),
    listByTenant: Effect.fn("Sessions.listByTenant")(
      (tenantId, page) => listByTenant({ tenantId, limit: page.limit, after: page.after }),
      mapStoreError("Sessions.listByTenant")
    ),
    listRunningInShards: Effect.fn("Sessions.listRunningInShards")(
      (shards) => listRunningInShards(shards),
      mapStoreError("Sessions.listRunningInShards")
    ),
    setDesiredState: Effect.fn("Sessions.setDesiredState")(
      (id, state) => setDesiredState({ id, state }),
      mapStoreError("Sessions.setDesiredState")
    ),
    setRateLimits: Effect.fn("Sessions.setRateLimits")(
      (id, limits) => setRateLimits({ id, ...limits }),
      mapStoreError("Sessions.setRateLimits")
    ),
    rename: Effect.fn("Sessions.rename")((id, name) => rename({ id, name }), mapStoreError("Sessions.rename")),
    delete: Effect.fn("Sessions.delete")((id) => delete_(id), mapStoreError("Sessions.delete"))
  })
})

export const layer = Layer.effect(Sessions, make)
