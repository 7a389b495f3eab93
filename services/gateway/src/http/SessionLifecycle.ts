/**
 * A session's lifecycle: read it, rename it, stop it (deleting it is the tenant's: SessionManagement.ts). The record
 * and what its owner last saved are in Postgres; the live part (status, linked number, last activity, queue) comes
 * from the owner when it answers promptly, and from what it last saved otherwise, so a session whose node is moving
 * still reads.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Router } from "@wacluster/cluster/Router"
import { SessionDetail, SessionRateLimit, WaclusterApi } from "@wacluster/domain/Api"
import { BadRequest } from "@wacluster/domain/ApiErrors"
import { findCity } from "@wacluster/domain/Cities"
import { type Caller, GetHealth, messageQueueHealth, SetRateLimits, StopSession } from "@wacluster/domain/Protocol"
import { Outbox } from "@wacluster/store/Outbox"
import { SessionRuntime } from "@wacluster/store/SessionRuntime"
import { type SessionRecord, Sessions } from "@wacluster/store/Sessions"
import { DateTime, Duration, Effect, Either, Option } from "effect"
import { chargeRequest, currentCaller, sessionFor, storeTrouble } from "./Access.js"
import { routingErrors, sessionNotFound } from "./Routing.js"

/** How long a read waits for the owner's live answer before it answers from Postgres. */
const LIVE_WAIT = Duration.seconds(2)

export const SessionLifecycleLive = HttpApiBuilder.group(
  WaclusterApi,
  "sessionLifecycle",
  (handlers) =>
    Effect.gen(function*() {
      const router = yield* Router
      const sessions = yield* Sessions
      const runtime = yield* SessionRuntime
      const outbox = yield* Outbox

      /** The session in full; `caller`'s request is counted by the owner's answer (undefined: counted already). */
      const detail = (record: SessionRecord, caller: Caller | undefined) =>
        Effect.gen(function*() {
          const answer = yield* router.send(
            new GetHealth({ sessionId: record.id, ...(caller === undefined ? {} : { caller }) })
          )
            .pipe(Effect.timeout(LIVE_WAIT), Effect.either)
          // Over its rate limit is an answer; any other trouble of the owner's is read around.
          if (answer._tag === "Left" && answer.left._tag === "RateLimited") {
            return yield* Effect.fail(answer.left).pipe(routingErrors(record.id))
          }
          const live = Either.getRight(answer)
          const common = {
            rateLimit: new SessionRateLimit({
              requestsPerMinute: record.requestsPerMinute,
              messagesPerHour: record.messagesPerHour
            }),
            id: record.id,
            name: record.name,
            city: record.city,
            createdAt: DateTime.unsafeFromDate(record.createdAt)
          }
          if (Option.isSome(live)) {
            const health = live.value
            // All of it the owner's live answer: the number is known the moment the session is connected.
            return new SessionDetail({
              ...common,
              phoneNumber: health.connection.phoneNumber,
              status: health.connection.status,
              reason: health.connection.reason,
              connectedAt: health.connection.connectedAt,
              lastActivityAt: health.lastActivityAt,
              messageQueue: health.messageQueue
            })
          }
          // The owner did not answer in time (moving, restarting): what it last saved.
          const saved = yield* runtime.load(record.id).pipe(Effect.catchAll(storeTrouble("reading the session")))
          const stopped = record.desiredState === "stopped"
          const depth = yield* outbox.depth(record.id).pipe(Effect.catchAll(storeTrouble("reading the queue")))
          const at = (date: Date | null) => date === null ? null : DateTime.unsafeFromDate(date)
          return new SessionDetail({
            ...common,
            phoneNumber: Option.match(saved, { onNone: () => null, onSome: (r) => r.phoneNumber }),
            status: Option.match(saved, {
              onNone: () => stopped ? "disconnected" as const : "connecting" as const,
              onSome: (r) => r.status
            }),
            reason: Option.match(saved, { onNone: () => stopped ? "stopped" as const : null, onSome: (r) => r.reason }),
            connectedAt: Option.match(saved, { onNone: () => null, onSome: (r) => at(r.connectedAt) }),
            lastActivityAt: Option.match(saved, { onNone: () => null, onSome: (r) => at(r.lastActivityAt) }),
            messageQueue: messageQueueHealth(depth.pending, depth.oldestAt, new Date())
          })
        })

      return handlers
        .handle("get", ({ path }) =>
          Effect.gen(function*() {
            const record = yield* sessionFor(path.sessionId)
            return yield* detail(record, yield* currentCaller)
          }))
        .handle("update", ({ path, payload }) =>
          Effect.gen(function*() {
            let record = yield* sessionFor(path.sessionId)
            // Counted before anything changes: over the limit, a 429 and nothing done.
            yield* chargeRequest(path.sessionId)
            if (payload.city !== undefined) {
              const asked = findCity(payload.city)
              if (Option.isNone(asked) || asked.value.slug !== record.city) {
                return yield* new BadRequest({
                  message: `a session's city is permanent (it decides the session's residential proxy): this session ` +
                    `stays in ${record.city}. To use ${payload.city}, create a new session there (POST /sessions).`,
                  details: { field: "city", city: record.city }
                })
              }
            }
            if (payload.name !== undefined && payload.name !== record.name) {
              const renamed = yield* sessions.rename(record.id, payload.name).pipe(
                Effect.catchAll(storeTrouble("renaming the session"))
              )
              if (Option.isNone(renamed)) return yield* sessionNotFound(path.sessionId)
              record = renamed.value
              yield* Effect.logInfo("session renamed").pipe(Effect.annotateLogs({ sessionId: record.id }))
            }
            if (payload.rateLimit !== undefined) {
              const wanted = {
                requestsPerMinute: payload.rateLimit.requestsPerMinute === undefined
                  ? record.requestsPerMinute
                  : payload.rateLimit.requestsPerMinute,
                messagesPerHour: payload.rateLimit.messagesPerHour === undefined
                  ? record.messagesPerHour
                  : payload.rateLimit.messagesPerHour
              }
              const updated = yield* sessions.setRateLimits(record.id, wanted).pipe(
                Effect.catchAll(storeTrouble("setting the rate limits"))
              )
              if (Option.isNone(updated)) return yield* sessionNotFound(path.sessionId)
              record = updated.value
              // Recorded first: a node that starts the session later reads them. The one running it now is told,
              // and until it confirms the caller gets a 503 to retry (the limits stay recorded; a retry is harmless).
              yield* router.send(new SetRateLimits({ sessionId: record.id, ...wanted })).pipe(
                routingErrors(record.id)
              )
            }
            return yield* detail(record, undefined)
          }))
        .handle("stop", ({ path }) =>
          Effect.gen(function*() {
            yield* sessionFor(path.sessionId)
            // Recorded first: whichever node runs the session next keeps it stopped, even if this node never hears.
            yield* sessions.setDesiredState(path.sessionId, "stopped").pipe(
              Effect.catchAll(storeTrouble("stopping the session"))
            )
            return yield* router.send(new StopSession({ sessionId: path.sessionId, caller: yield* currentCaller }))
              .pipe(
                routingErrors(path.sessionId)
              )
          }))
    })
)
