/**
 * The credentials middlewares of the contract: admin token, tenant token, session API key.
 * Every refusal is the same 401 shape and never tells whether a session exists.
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Nats } from "@wacluster/cluster/Nats"
import { ServiceUnavailable, Unauthorized } from "@wacluster/domain/ApiErrors"
import { AdminAuth, type CurrentCaller, SessionAccess, TenantAuth } from "@wacluster/domain/Auth"
import { credentialsRevokedSubject } from "@wacluster/domain/Control"
import type { ApiKeyId, SessionId, TenantId } from "@wacluster/domain/Ids"
import { type ActiveApiKey, ApiKeys } from "@wacluster/store/ApiKeys"
import { Tenants } from "@wacluster/store/Tenants"
import { Config, Context, Deferred, Duration, Effect, Layer, Option, Redacted, Runtime, Schedule } from "effect"
import { API_KEY_PREFIX, hashSecret, looksLike, secretsEqual, TENANT_TOKEN_PREFIX } from "./Secrets.js"

/** How often a key's `lastUsedAt` is brought up to date while it is in use. */
const LAST_USED_EVERY_MS = 60_000

const refuse = (message: string) => Effect.fail(new Unauthorized({ message }))

/**
 * How long a gateway may reuse a credential lookup. Revocations do not wait for it: every gateway reads the
 * credentials' revision (which Postgres raises with every revocation, migration 0009) every REVISION_EVERY and forgets
 * what it cached when it moved, and forgets at once when another gateway announces one over NATS.
 */
const cacheTtl = Config.duration("CREDENTIAL_CACHE_TTL").pipe(
  Config.withDefault(Duration.minutes(5)),
  Config.withDescription("How long a gateway reuses a key or token lookup (revocations apply within a second anyway)")
)

/** How often a gateway reads the credentials' revision. */
const REVISION_EVERY = Duration.millis(400)
/** Not-found answers are kept briefly: a stream of made-up keys must not push the real ones out. */
const NOT_FOUND_TTL_MS = 1_000
/**
 * While the revision cannot be read (its last read failed: Postgres unreachable), nothing looked up longer ago than
 * this is trusted: a revocation this gateway could not hear of still applies within a second.
 */
const DEAF_LIMIT_MS = 1_000
/**
 * A read that neither answers nor fails for this long counts as failed. Not DEAF_LIMIT_MS: a read a little late under
 * load must not turn every cached credential into a lookup a second, when load is what the cache is for.
 */
const READ_STUCK_MS = 5_000
const CAPACITY = 100_000

/** A cache entry's key: the secret's hash, never the secret. */
const idOf = (hash: Uint8Array) => Buffer.from(hash).toString("hex")

/** One lookup, shared by the requests that ask for the same credential while it is good. */
interface Entry<A, E> {
  /** The cache's generation when it began: a revocation seen since makes it stale. */
  readonly generation: number
  /** When it began (monotonic ms). */
  readonly at: number
  readonly answer: Deferred.Deferred<A, E>
  /** Set when it succeeded (a not-found answer is kept only briefly). */
  value: A | undefined
}

/**
 * The credential caches and what keeps them honest: the revision watch and the NATS announcements. A lookup that
 * began before a revocation was seen is never handed out after it, so no revoked credential is cached anew.
 */
const makeCaches = Effect.gen(function*() {
  const ttl = Duration.toMillis(yield* cacheTtl)
  const keys = yield* ApiKeys
  const scope = yield* Effect.scope
  let generation = 0
  let heardAt = performance.now()
  let failing = false
  const clears: Array<() => void> = []
  const forgetAll = () => {
    generation++
    for (const clear of clears) clear()
  }

  const cache = <A, E>(lookup: (hash: Uint8Array) => Effect.Effect<Option.Option<A>, E>) => {
    const entries = new Map<string, Entry<Option.Option<A>, E>>()
    clears.push(() => entries.clear())
    const good = (entry: Entry<Option.Option<A>, E>, now: number) => {
      if (entry.generation !== generation) return false
      const lifetime = entry.value !== undefined && Option.isNone(entry.value) ? Math.min(ttl, NOT_FOUND_TTL_MS) : ttl
      const deaf = failing || now - heardAt > READ_STUCK_MS
      const limit = deaf ? Math.min(lifetime, DEAF_LIMIT_MS) : lifetime
      return now - entry.at < limit
    }
    const lookupCached = (secret: string): Effect.Effect<Option.Option<A>, E> =>
      Effect.suspend(() => {
        const hash = hashSecret(secret)
        const id = idOf(hash)
        const now = performance.now()
        const known = entries.get(id)
        if (known !== undefined && good(known, now)) return Deferred.await(known.answer)
        return Effect.gen(function*() {
          const answer = yield* Deferred.make<Option.Option<A>, E>()
          const entry: Entry<Option.Option<A>, E> = { generation, at: now, answer, value: undefined }
          entries.delete(id)
          entries.set(id, entry)
          if (entries.size > CAPACITY) {
            const oldest = entries.keys().next()
            if (oldest.done !== true) entries.delete(oldest.value)
          }
          // Its own fiber: the requests sharing it get their answer even if the one that began it goes away.
          yield* lookup(hash).pipe(
            Effect.tap((value) => Effect.sync(() => entry.value = value)),
            // Failures (store trouble) are never kept.
            Effect.tapErrorCause(() => Effect.sync(() => entries.get(id) === entry && entries.delete(id))),
            Effect.exit,
            Effect.flatMap((exit) => Deferred.done(entry.answer, exit)),
            Effect.forkIn(scope)
          )
          return yield* Deferred.await(entry.answer)
        })
      })
    /** What the cache holds for the secret, when it is good and answered; without waiting and without a lookup. */
    const peek = (secret: string): Option.Option<A> | undefined => {
      const known = entries.get(idOf(hashSecret(secret)))
      return known !== undefined && known.value !== undefined && good(known, performance.now())
        ? known.value
        : undefined
    }
    return { lookup: lookupCached, peek }
  }

  // The revision as Postgres has it; the first read is the baseline (when it fails, the first that succeeds forgets
  // what was looked up meanwhile: a revocation may have come between).
  let revision = yield* Effect.option(keys.revision)
  yield* keys.revision.pipe(
    Effect.matchEffect({
      onSuccess: (now) => {
        heardAt = performance.now()
        if (Option.isNone(revision) || revision.value !== now) forgetAll()
        revision = Option.some(now)
        const recovered = failing
        failing = false
        return recovered ? Effect.logInfo("credentials' revision readable again") : Effect.void
      },
      // Logged once per outage, not at every read.
      onFailure: (error) => {
        const first = !failing
        failing = true
        return first
          ? Effect.logWarning("cannot read the credentials' revision: cached credentials are trusted for 1 s", error)
          : Effect.void
      }
    }),
    Effect.repeat(Schedule.spaced(REVISION_EVERY)),
    Effect.forkScoped
  )

  // A key revoked (or a session deleted) through any gateway is announced: forget at once, not at the next read.
  const nats = yield* Nats
  yield* Effect.acquireRelease(
    Effect.sync(() => nats.connection.subscribe(credentialsRevokedSubject, { callback: forgetAll })),
    (subscription) => Effect.sync(() => subscription.unsubscribe())
  )
  return { cache }
})

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

/** Who calls with a session's API key, as the session routes see it. */
export type KeyCaller = Context.Tag.Service<CurrentCaller> & { readonly keyId: ApiKeyId; readonly sessionId: SessionId }

const keyCaller = (active: ActiveApiKey): KeyCaller => ({
  tenantId: active.tenantId,
  sessionId: active.sessionId,
  keyId: active.id,
  keyRequestsPerMinute: active.requestsPerMinute,
  keyMessagesPerHour: active.messagesPerHour
})

/** The tenant and key lookups, with their caches, shared by every middleware that accepts them. */
export class Credentials extends Context.Tag("@wacluster/gateway/Credentials")<Credentials, {
  readonly tenant: (
    token: string,
    missing: string
  ) => Effect.Effect<{ readonly tenantId: TenantId }, Unauthorized | ServiceUnavailable>
  readonly apiKey: (key: string, missing: string) => Effect.Effect<KeyCaller, Unauthorized | ServiceUnavailable>
  /**
   * The caller of a key this gateway holds a good answer for, at once (no lookup, no waiting); undefined when the
   * key is not known here right now, whatever it is. A caller taken this way must still `recordUse`.
   */
  readonly cachedApiKey: (key: string) => KeyCaller | undefined
  /** Notes that the key was used (its `lastUsedAt`, written at most once a minute). */
  readonly recordUse: (keyId: ApiKeyId) => Effect.Effect<void>
  /** `recordUse` outside Effect (the send fast lane): the write, when one is due, runs in the background. */
  readonly noteUse: (keyId: ApiKeyId) => void
}>() {}

export const CredentialsLive = Layer.scoped(
  Credentials,
  Effect.gen(function*() {
    const tenants = yield* Tenants
    const keys = yield* ApiKeys
    const { cache } = yield* makeCaches
    const tenantLookup = cache(tenants.findByTokenHash)
    const keyLookup = cache(keys.findActiveByHash)
    /** When this gateway last recorded each key's use (monotonic ms): at most one write per key a minute. */
    const touched = new Map<string, number>()
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const noteUse = (keyId: ApiKeyId) => {
      const now = performance.now()
      const last = touched.get(keyId)
      if (last !== undefined && now - last < LAST_USED_EVERY_MS) return
      if (touched.size >= 100_000) touched.clear()
      touched.set(keyId, now)
      runFork(
        keys.touchLastUsed(keyId).pipe(
          Effect.tapError((error) => Effect.logWarning("could not record a key's last use", error)),
          Effect.ignore
        )
      )
    }
    const recordUse = (keyId: ApiKeyId) => Effect.sync(() => noteUse(keyId))
    return Credentials.of({
      noteUse,
      tenant: (given, missing) => {
        if (given === "") return refuse(missing)
        if (!looksLike(given, TENANT_TOKEN_PREFIX)) return refuse("invalid tenant token")
        return orRefuse(tenantLookup.lookup(given)).pipe(
          Effect.flatMap(Option.match({
            onNone: () => refuse("invalid tenant token"),
            onSome: (tenant) => Effect.succeed({ tenantId: tenant.id })
          }))
        )
      },
      apiKey: (given, missing) => {
        if (given === "") return refuse(missing)
        if (!looksLike(given, API_KEY_PREFIX)) return refuse("invalid API key")
        return orRefuse(keyLookup.lookup(given)).pipe(
          Effect.flatMap(Option.match({
            onNone: () => refuse("invalid API key"),
            onSome: (active) => Effect.as(recordUse(active.id), keyCaller(active))
          }))
        )
      },
      cachedApiKey: (given) => {
        if (!looksLike(given, API_KEY_PREFIX)) return undefined
        const known = keyLookup.peek(given)
        return known === undefined || Option.isNone(known) ? undefined : keyCaller(known.value)
      },
      recordUse
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
    const byKey = (key: string) => credentials.apiKey(key, missing)
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
