/**
 * Who may act on a session: its own API key, or the tenant that owns it. Anything else is the same 404 as a session
 * that does not exist, so a caller learns nothing about other sessions.
 */
import { InternalError } from "@wacluster/domain/ApiErrors"
import { CurrentCaller, CurrentTenant } from "@wacluster/domain/Auth"
import type { SessionId } from "@wacluster/domain/Ids"
import { Sessions } from "@wacluster/store/Sessions"
import { Effect, Option } from "effect"
import { sessionNotFound } from "./Routing.js"

const lookupFailed = (error: unknown) =>
  Effect.zipRight(
    Effect.logError("session lookup failed", error),
    new InternalError({ message: "the session could not be looked up; retry shortly" })
  )

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
    const sessions = yield* Sessions
    const record = yield* sessions.findById(sessionId).pipe(Effect.catchTag("StoreError", lookupFailed))
    if (Option.isNone(record) || record.value.tenantId !== caller.tenantId) return yield* sessionNotFound(sessionId)
    return record.value
  })

/** The session's record, when it belongs to the calling tenant (routes only the tenant token may call). */
export const ownedSession = (sessionId: SessionId) =>
  Effect.gen(function*() {
    const { tenantId } = yield* CurrentTenant
    const sessions = yield* Sessions
    const record = yield* sessions.findById(sessionId).pipe(Effect.catchTag("StoreError", lookupFailed))
    if (Option.isNone(record) || record.value.tenantId !== tenantId) return yield* sessionNotFound(sessionId)
    return record.value
  })
