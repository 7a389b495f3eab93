/**
 * The three kinds of credentials and what each proves. The gateway implements these middlewares.
 */
import { HttpApiMiddleware, HttpApiSecurity } from "@effect/platform"
import { Context, Schema } from "effect"
import { ServiceUnavailableJson, UnauthorizedJson } from "./ApiErrors.js"
import type { ApiKeyId, SessionId, TenantId } from "./Ids.js"

/** Refused (401), or the credentials could not be checked right now (503, e.g. while Postgres restarts). */
const AuthFailure = Schema.Union(UnauthorizedJson, ServiceUnavailableJson)

/** Operators: `Authorization: Bearer <ADMIN_TOKEN>`. */
export class AdminAuth extends HttpApiMiddleware.Tag<AdminAuth>()("@wacluster/domain/AdminAuth", {
  failure: AuthFailure,
  security: { adminToken: HttpApiSecurity.bearer }
}) {}

export class CurrentTenant extends Context.Tag("@wacluster/domain/CurrentTenant")<CurrentTenant, {
  readonly tenantId: TenantId
}>() {}

/** Tenants manage their sessions with `Authorization: Bearer <tenant token>`. */
export class TenantAuth extends HttpApiMiddleware.Tag<TenantAuth>()("@wacluster/domain/TenantAuth", {
  failure: AuthFailure,
  provides: CurrentTenant,
  security: { tenantToken: HttpApiSecurity.bearer }
}) {}

export class CurrentApiKey extends Context.Tag("@wacluster/domain/CurrentApiKey")<CurrentApiKey, {
  readonly keyId: ApiKeyId
  readonly sessionId: SessionId
  readonly tenantId: TenantId
}>() {}

/** Session-scoped calls use the session's own API key in `x-api-key`. */
export class SessionKeyAuth extends HttpApiMiddleware.Tag<SessionKeyAuth>()("@wacluster/domain/SessionKeyAuth", {
  failure: AuthFailure,
  provides: CurrentApiKey,
  security: { apiKey: HttpApiSecurity.apiKey({ in: "header", key: "x-api-key" }) }
}) {}

export class CurrentCaller extends Context.Tag("@wacluster/domain/CurrentCaller")<CurrentCaller, {
  readonly tenantId: TenantId
  /** Set when the caller used a session's API key: it may only touch that session. */
  readonly sessionId: SessionId | null
}>() {}

/**
 * Routes a tenant manages and a session's key may also call: the session's API key in `x-api-key`, or the
 * tenant token as `Authorization: Bearer <tenant token>`.
 */
export class SessionAccess extends HttpApiMiddleware.Tag<SessionAccess>()("@wacluster/domain/SessionAccess", {
  failure: AuthFailure,
  provides: CurrentCaller,
  security: {
    apiKey: HttpApiSecurity.apiKey({ in: "header", key: "x-api-key" }),
    tenantToken: HttpApiSecurity.bearer
  }
}) {}
