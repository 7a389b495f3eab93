/**
 * Tenants: the businesses that own sessions. A tenant authenticates with a token whose hash is stored here.
 */
import { SqlClient, SqlSchema } from "@effect/sql"
import { TenantId } from "@wacluster/domain/Ids"
import { Context, Effect, Layer, type Option, Schema } from "effect"
import { mapStoreError, orDieNoRow, type StoreError } from "./Errors.js"
import { Bytes } from "./internal/Columns.js"

export class Tenant extends Schema.Class<Tenant>("@wacluster/store/Tenant")({
  id: TenantId,
  name: Schema.String,
  tokenHash: Bytes,
  createdAt: Schema.DateFromSelf
}) {}

export const NewTenant = Schema.Struct({
  id: TenantId,
  name: Schema.String,
  tokenHash: Bytes
})
export type NewTenant = typeof NewTenant.Type

export class Tenants extends Context.Tag("@wacluster/store/Tenants")<Tenants, {
  readonly create: (tenant: NewTenant) => Effect.Effect<Tenant, StoreError>
  readonly findById: (id: TenantId) => Effect.Effect<Option.Option<Tenant>, StoreError>
  readonly findByTokenHash: (hash: Uint8Array) => Effect.Effect<Option.Option<Tenant>, StoreError>
}>() {}

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const create = SqlSchema.single({
    Request: NewTenant,
    Result: Tenant,
    execute: ({ id, name, tokenHash }) =>
      sql`INSERT INTO tenants (id, name, token_hash) VALUES (${id}, ${name}, ${tokenHash}) RETURNING *`
  })

  const findById = SqlSchema.findOne({
    Request: TenantId,
    Result: Tenant,
    execute: (id) => sql`SELECT * FROM tenants WHERE id = ${id}`
  })

  const findByTokenHash = SqlSchema.findOne({
    Request: Bytes,
    Result: Tenant,
    execute: (hash) => sql`SELECT * FROM tenants WHERE token_hash = ${hash}`
  })

  return Tenants.of({
    create: Effect.fn("Tenants.create")((tenant) => create(tenant), orDieNoRow, mapStoreError("Tenants.create")),
    findById: Effect.fn("Tenants.findById")((id) => findById(id), mapStoreError("Tenants.findById")),
    findByTokenHash: Effect.fn("Tenants.findByTokenHash")(
      (hash) => findByTokenHash(hash),
      mapStoreError("Tenants.findByTokenHash")
    )
  })
})

export const layer = Layer.effect(Tenants, make)
