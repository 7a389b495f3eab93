/**
 * The three kinds of credentials and what each proves. The gateway implements these middlewares.
 */
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
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

export class CurrentCaller extends Context.Tag("@wacluster/domain/CurrentCaller")<CurrentCaller, {
  readonly tenantId: TenantId
  /** Set when the caller used a session's API key: it may only touch that session. */
  readonly sessionId: SessionId | null
  /** The API key used, if one was, and its own rate limits (null: none of its own). */
  readonly keyId: ApiKeyId | null
  readonly keyRequestsPerMinute: number | null
  readonly keyMessagesPerHour: number | null
}>() {}

/**
 * Session routes: the session's API key in `x-api-key` (it reaches only its own session), or the tenant token as
 * `Authorization: Bearer <tenant token>` (every session of the tenant).
 */
export class SessionAccess extends HttpApiMiddleware.Tag<SessionAccess>()("@wacluster/domain/SessionAccess", {
  failure: AuthFailure,
  provides: CurrentCaller,
  security: {
    apiKey: HttpApiSecurity.apiKey({ in: "header", key: "x-api-key" }),
    tenantToken: HttpApiSecurity.bearer
  }
}) {}
