/**
 * Operators create tenants; the tenant token is returned once and only its hash is kept.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Tenant, TenantCreated, WaclusterApi } from "@wacluster/domain/Api"
import { makeTenantId } from "@wacluster/domain/Ids"
import { Tenants } from "@wacluster/store/Tenants"
import { DateTime, Effect } from "effect"
import { hashSecret, newSecret, TENANT_TOKEN_PREFIX } from "../Secrets.js"

export const TenantsLive = HttpApiBuilder.group(WaclusterApi, "tenants", (handlers) =>
  Effect.gen(function*() {
    const tenants = yield* Tenants
    return handlers.handle("create", ({ payload }) =>
      Effect.gen(function*() {
        const token = newSecret(TENANT_TOKEN_PREFIX)
        const record = yield* tenants.create({
          id: yield* makeTenantId,
          name: payload.name,
          tokenHash: hashSecret(token)
        })
        yield* Effect.logInfo("tenant created").pipe(Effect.annotateLogs({ tenantId: record.id }))
        return new TenantCreated({
          tenant: new Tenant({
            id: record.id,
            name: record.name,
            createdAt: DateTime.unsafeFromDate(record.createdAt)
          }),
          token
        })
      }).pipe(Effect.orDie))
  }))
