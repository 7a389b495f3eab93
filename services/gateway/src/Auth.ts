/**
 * The credentials middlewares of the contract: admin token, tenant token, session API key.
 * Every refusal is the same 401 shape and never tells whether a session exists.
 */
import { Unauthorized } from "@wacluster/domain/ApiErrors"
import { AdminAuth, SessionKeyAuth, TenantAuth } from "@wacluster/domain/Auth"
import { ApiKeys } from "@wacluster/store/ApiKeys"
import { Tenants } from "@wacluster/store/Tenants"
import { Cache, Config, Duration, Effect, Exit, Layer, Option, Redacted } from "effect"
import { API_KEY_PREFIX, hashSecret, looksLike, secretsEqual, TENANT_TOKEN_PREFIX } from "./Secrets.js"

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
  }).pipe(Effect.map((cache) => (secret: string) => cache.get(Buffer.from(hashSecret(secret)).toString("hex"))))

/** Store trouble while authenticating is logged and answered as a refusal, never as a leak of detail. */
const orRefuse = <A, E>(effect: Effect.Effect<A, E>) =>
  effect.pipe(
    Effect.tapError((error) => Effect.logError("credential lookup failed", error)),
    Effect.catchAll(() => refuse("credentials could not be checked, try again"))
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

export const TenantAuthLive = Layer.effect(
  TenantAuth,
  Effect.gen(function*() {
    const tenants = yield* Tenants
    const lookup = yield* cachedLookup(yield* cacheTtl, tenants.findByTokenHash)
    return TenantAuth.of({
      tenantToken: (token) => {
        const given = Redacted.value(token)
        if (given === "") return refuse("missing tenant token: send Authorization: Bearer <tenant token>")
        if (!looksLike(given, TENANT_TOKEN_PREFIX)) return refuse("invalid tenant token")
        return orRefuse(lookup(given)).pipe(
          Effect.flatMap(Option.match({
            onNone: () => refuse("invalid tenant token"),
            onSome: (tenant) => Effect.succeed({ tenantId: tenant.id })
          }))
        )
      }
    })
  })
)

export const SessionKeyAuthLive = Layer.effect(
  SessionKeyAuth,
  Effect.gen(function*() {
    const keys = yield* ApiKeys
    const lookup = yield* cachedLookup(yield* cacheTtl, keys.findActiveByHash)
    return SessionKeyAuth.of({
      apiKey: (key) => {
        const given = Redacted.value(key)
        if (given === "") return refuse("missing API key: send the session's key in the x-api-key header")
        if (!looksLike(given, API_KEY_PREFIX)) return refuse("invalid API key")
        return orRefuse(lookup(given)).pipe(
          Effect.flatMap(Option.match({
            onNone: () => refuse("invalid API key"),
            onSome: (active) =>
              Effect.succeed({ keyId: active.id, sessionId: active.sessionId, tenantId: active.tenantId })
          }))
        )
      }
    })
  })
)

export const layer = Layer.mergeAll(AdminAuthLive, TenantAuthLive, SessionKeyAuthLive)
