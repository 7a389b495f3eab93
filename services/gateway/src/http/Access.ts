/**
 * Who may act on a session: its own API key, or the tenant that owns it. Anything else is the same 404 as a session
 * that does not exist, so a caller learns nothing about other sessions.
 */
import { Router } from "@wacluster/cluster/Router"
import { InternalError } from "@wacluster/domain/ApiErrors"
import { CurrentCaller, CurrentTenant } from "@wacluster/domain/Auth"
import type { SessionId, TenantId } from "@wacluster/domain/Ids"
import { Caller, Charge } from "@wacluster/domain/Protocol"
import { Sessions } from "@wacluster/store/Sessions"
import { type Context, Duration, Effect, Option } from "effect"
import { routingErrors, sessionNotFound } from "./Routing.js"

/** Postgres failing under a request: logged, and a 500 that says what failed (no detail leaks). */
export const storeTrouble = (what: string) => (error: unknown) =>
  Effect.zipRight(
    Effect.logError(`${what} failed`, error),
    new InternalError({ message: `${what} failed; retry shortly` })
  )

/** The session's record when it belongs to `tenantId`; the same 404 as a missing session otherwise. */
const tenantSession = (tenantId: TenantId, sessionId: SessionId) =>
  Effect.gen(function*() {
    const sessions = yield* Sessions
    const record = yield* sessions.findById(sessionId).pipe(Effect.catchAll(storeTrouble("looking up the session")))
    if (Option.isNone(record) || record.value.tenantId !== tenantId) return yield* sessionNotFound(sessionId)
    return record.value
  })

/** The caller may act on this session; a key caller is checked without reading Postgres. */
export const authorize = (sessionId: SessionId) =>
  Effect.gen(function*() {
    const caller = yield* CurrentCaller
    if (caller.sessionId !== null) {
      if (caller.sessionId !== sessionId) return yield* sessionNotFound(sessionId)
      return
    }
    yield* sessionFor(sessionId)
  })

/** The session's record, when the caller may act on it. */
export const sessionFor = (sessionId: SessionId) =>
  Effect.gen(function*() {
    const caller = yield* CurrentCaller
    if (caller.sessionId !== null && caller.sessionId !== sessionId) return yield* sessionNotFound(sessionId)
    return yield* tenantSession(caller.tenantId, sessionId)
  })

/** The session's record, when it belongs to the calling tenant (routes only the tenant token may call). */
export const ownedSession = (sessionId: SessionId) =>
  Effect.flatMap(CurrentTenant, ({ tenantId }) => tenantSession(tenantId, sessionId))

/**
 * For Schema classes built on the hot path from values already decoded (a request's payload, a stored key): their
 * constructor's validation would only check them a second time, at a cost that shows at thousands of requests a
 * second.
 */
export const NO_CHECK = { disableValidation: true } as const

/** The caller as the session's owner counts it against the rate limits. */
export const callerOf = (caller: Context.Tag.Service<CurrentCaller>) =>
  new Caller({
    keyId: caller.keyId,
    requestsPerMinute: caller.keyRequestsPerMinute,
    messagesPerHour: caller.keyMessagesPerHour
  }, NO_CHECK)

/** Who is calling, as the session's owner counts it against the rate limits. */
export const currentCaller = Effect.map(CurrentCaller, callerOf)

/** How long a request the gateway answers by itself waits for the session's owner to count it. */
const CHARGE_WAIT = Duration.seconds(1)

/**
 * Counts a request the gateway answers by itself (from Postgres) against the session's rate limits at its owner,
 * before anything is done: over a limit is a 429 and nothing changes. An owner that does not answer (moving,
 * restarting) holds no such request back.
 */
export const chargeRequest = (sessionId: SessionId) =>
  Effect.gen(function*() {
    const router = yield* Router
    const answer = yield* router.send(new Charge({ sessionId, caller: yield* currentCaller })).pipe(
      Effect.timeout(CHARGE_WAIT),
      Effect.either
    )
    if (answer._tag === "Left" && (answer.left._tag === "RateLimited" || answer.left._tag === "SessionUnknown")) {
      return yield* Effect.fail(answer.left).pipe(routingErrors(sessionId))
    }
  })
