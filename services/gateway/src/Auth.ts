/**
 * The credentials middlewares of the contract: admin token, tenant token, session API key.
 * Every refusal is the same 401 shape and never tells whether a session exists.
 */
import { HttpServerRequest } from "@effect/platform"
import { Nats } from "@wacluster/cluster/Nats"
import { ServiceUnavailable, Unauthorized } from "@wacluster/domain/ApiErrors"
import { AdminAuth, SessionAccess, TenantAuth } from "@wacluster/domain/Auth"
import { credentialsRevokedSubject } from "@wacluster/domain/Control"
import type { ApiKeyId, SessionId, TenantId } from "@wacluster/domain/Ids"
import { ApiKeys } from "@wacluster/store/ApiKeys"
import { Tenants } from "@wacluster/store/Tenants"
import { Cache, Config, Context, Duration, Effect, Exit, Layer, Option, Redacted, Runtime } from "effect"
import { API_KEY_PREFIX, hashSecret, looksLike, secretsEqual, TENANT_TOKEN_PREFIX } from "./Secrets.js"

/** How often a key's `lastUsedAt` is brought up to date while it is in use. */
const LAST_USED_EVERY_MS = 60_000

const refuse = (message: string) => Effect.fail(new Unauthorized({ message }))

/**
 * How long a gateway may reuse a credential lookup. At most one second, so a revoked key or a deleted session
 * stops working on every gateway within a second without any invalidation message.
 */
const cacheTtl = Config.duration("CREDENTIAL_CACHE_TTL").pipe(
  Config.withDefault(Duration.seconds(1)),
  Config.validate({
    message: "CREDENTIAL_CACHE_TTL must be at most 1 second (revocations must apply within 1 s)",
    validation: (ttl) => Duration.lessThanOrEqualTo(ttl, Duration.seconds(1))
  }),
  Config.withDescription("How long a gateway reuses a key or token lookup (0 to 1 second)")
)

/** Lookups by secret hash, cached for `ttl` when they succeed (store failures are never cached). */
const cachedLookup = <A, E>(ttl: Duration.Duration, lookup: (hash: Uint8Array) => Effect.Effect<A, E>) =>
  Cache.makeWith({
    capacity: 100_000,
    lookup: (hashHex: string) => lookup(Buffer.from(hashHex, "hex")),
    timeToLive: (exit) => Exit.isSuccess(exit) ? ttl : Duration.zero
  }).pipe(Effect.map((cache) => ({
    get: (secret: string) => cache.get(Buffer.from(hashSecret(secret)).toString("hex")),
    invalidateAll: cache.invalidateAll
  })))

/**
 * Store trouble while authenticating (Postgres restarting) is logged and answered 503 with Retry-After: the
 * credentials may well be good, and a 401 would tell a client to stop trying. No detail leaks.
 */
const orRefuse = <A, E>(effect: Effect.Effect<A, E>) =>
  effect.pipe(
    Effect.tapError((error) => Effect.logError("credential lookup failed", error)),
    Effect.catchAll(() =>
      Effect.fail(
        new ServiceUnavailable({
          message: "credentials could not be checked right now; retry shortly",
          retryAfterSeconds: 1
        })
      )
    )
  )

export const AdminAuthLive = Layer.effect(
  AdminAuth,
  Effect.gen(function*() {
    const adminToken = yield* Config.redacted("ADMIN_TOKEN").pipe(
      Config.withDescription("The operators' bearer token for /tenants and /admin routes")
    )
    return AdminAuth.of({
      adminToken: (token) => {
        const given = Redacted.value(token)
        if (given === "") return refuse("missing admin token: send Authorization: Bearer <ADMIN_TOKEN>")
        return secretsEqual(given, Redacted.value(adminToken)) ? Effect.void : refuse("invalid admin token")
      }
    })
  })
)

/** The tenant and key lookups, with their caches, shared by every middleware that accepts them. */
class Credentials extends Context.Tag("@wacluster/gateway/Credentials")<Credentials, {
  readonly tenant: (
    token: string,
    missing: string
  ) => Effect.Effect<{ readonly tenantId: TenantId }, Unauthorized | ServiceUnavailable>
  readonly apiKey: (key: string, missing: string) => Effect.Effect<{
    readonly keyId: ApiKeyId
    readonly sessionId: SessionId
    readonly tenantId: TenantId
    readonly requestsPerMinute: number | null
    readonly messagesPerHour: number | null
  }, Unauthorized | ServiceUnavailable>
}>() {}

const CredentialsLive = Layer.scoped(
  Credentials,
  Effect.gen(function*() {
    const ttl = yield* cacheTtl
    const tenants = yield* Tenants
    const keys = yield* ApiKeys
    const tenantLookup = yield* cachedLookup(ttl, tenants.findByTokenHash)
    const keyLookup = yield* cachedLookup(ttl, keys.findActiveByHash)
    // A key revoked (or a session deleted) through any gateway: forget every cached key at once. Revocations are
    // rare, and a forgotten key costs one lookup the next time it is used.
    const nats = yield* Nats
    const runtime = yield* Effect.runtime<never>()
    yield* Effect.acquireRelease(
      Effect.sync(() =>
        nats.connection.subscribe(credentialsRevokedSubject, {
          callback: () => Runtime.runSync(runtime)(keyLookup.invalidateAll)
        })
      ),
      (subscription) => Effect.sync(() => subscription.unsubscribe())
    )
    /** When this gateway last recorded each key's use (monotonic ms): at most one write per key a minute. */
    const touched = new Map<string, number>()
    const recordUse = (keyId: ApiKeyId) =>
      Effect.suspend(() => {
        const now = performance.now()
        const last = touched.get(keyId)
        if (last !== undefined && now - last < LAST_USED_EVERY_MS) return Effect.void
        if (touched.size >= 100_000) touched.clear()
        touched.set(keyId, now)
        return keys.touchLastUsed(keyId).pipe(
          Effect.tapError((error) => Effect.logWarning("could not record a key's last use", error)),
          Effect.ignore,
          Effect.forkDaemon,
          Effect.asVoid
        )
      })
    return Credentials.of({
      tenant: (given, missing) => {
        if (given === "") return refuse(missing)
        if (!looksLike(given, TENANT_TOKEN_PREFIX)) return refuse("invalid tenant token")
        return orRefuse(tenantLookup.get(given)).pipe(
          Effect.flatMap(Option.match({
            onNone: () => refuse("invalid tenant token"),
            onSome: (tenant) => Effect.succeed({ tenantId: tenant.id })
          }))
        )
      },
      apiKey: (given, missing) => {
        if (given === "") return refuse(missing)
        if (!looksLike(given, API_KEY_PREFIX)) return refuse("invalid API key")
        return orRefuse(keyLookup.get(given)).pipe(
          Effect.flatMap(Option.match({
            onNone: () => refuse("invalid API key"),
            onSome: (active) =>
              Effect.as(recordUse(active.id), {
                keyId: active.id,
                sessionId: active.sessionId,
                tenantId: active.tenantId,
                requestsPerMinute: active.requestsPerMinute,
                messagesPerHour: active.messagesPerHour
              })
          }))
        )
      }
    })
  })
)

export const TenantAuthLive = Layer.effect(
  TenantAuth,
  Effect.map(Credentials, (credentials) =>
    TenantAuth.of({
      tenantToken: (token) =>
        credentials.tenant(Redacted.value(token), "missing tenant token: send Authorization: Bearer <tenant token>")
    }))
)

/**
 * Either credential; the key is tried first, and a key binds the caller to its own session. The framework tries the
 * bearer token whenever the key check fails, so without a token the key's own answer stands: a good key that could
 * not be checked (Postgres restarting) is a 503, not "missing credentials".
 */
export const SessionAccessLive = Layer.effect(
  SessionAccess,
  Effect.map(Credentials, (credentials) => {
    const missing = "missing credentials: send the session's API key in x-api-key, " +
      "or the tenant token as Authorization: Bearer <tenant token>"
    const byKey = (key: string) =>
      Effect.map(credentials.apiKey(key, missing), (active) => ({
        tenantId: active.tenantId,
        sessionId: active.sessionId,
        keyId: active.keyId,
        keyRequestsPerMinute: active.requestsPerMinute,
        keyMessagesPerHour: active.messagesPerHour
      }))
    return SessionAccess.of({
      apiKey: (key) => byKey(Redacted.value(key)),
      tenantToken: (token) =>
        Effect.gen(function*() {
          const given = Redacted.value(token)
          if (given === "") {
            const key = (yield* HttpServerRequest.HttpServerRequest).headers["x-api-key"]
            if (key !== undefined && key !== "") return yield* byKey(key)
          }
          const { tenantId } = yield* credentials.tenant(given, missing)
          return { tenantId, sessionId: null, keyId: null, keyRequestsPerMinute: null, keyMessagesPerHour: null }
        })
    })
  })
)

export const layer = Layer.mergeAll(AdminAuthLive, TenantAuthLive, SessionAccessLive).pipe(
  Layer.provide(CredentialsLive)
)
