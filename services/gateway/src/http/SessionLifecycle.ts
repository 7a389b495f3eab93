/**
 * A session's lifecycle: read it, rename it, stop it (deleting it is the tenant's: SessionManagement.ts). The record and what its owner last saved are in
 * Postgres; the live part (status, last activity, queue) comes from the owner when it answers promptly, so a
 * session whose node is moving still reads.
 */
import { HttpApiBuilder } from "@effect/platform"
import { Router } from "@wacluster/cluster/Router"
import { SessionDetail, WaclusterApi } from "@wacluster/domain/Api"
import { BadRequest, InternalError } from "@wacluster/domain/ApiErrors"
import { findCity } from "@wacluster/domain/Cities"
import { GetHealth, messageQueueHealth, StopSession } from "@wacluster/domain/Protocol"
import { Outbox } from "@wacluster/store/Outbox"
import { SessionRuntime } from "@wacluster/store/SessionRuntime"
import { type SessionRecord, Sessions } from "@wacluster/store/Sessions"
import { DateTime, Duration, Effect, Option } from "effect"
import { sessionFor } from "./Access.js"
import { routingErrors, sessionNotFound } from "./Routing.js"

/** How long a read waits for the owner's live answer before it answers from Postgres. */
const LIVE_WAIT = Duration.seconds(2)

export const storeTrouble = (what: string) => (error: unknown) =>
  Effect.zipRight(
    Effect.logError(`${what} failed`, error),
    new InternalError({ message: `${what} failed; retry shortly` })
  )

export const SessionLifecycleLive = HttpApiBuilder.group(
  WaclusterApi,
  "sessionLifecycle",
  (handlers) =>
    Effect.gen(function*() {
      const router = yield* Router
      const sessions = yield* Sessions
      const runtime = yield* SessionRuntime
      const outbox = yield* Outbox

      const detail = (record: SessionRecord) =>
        Effect.gen(function*() {
          const live = yield* router.send(new GetHealth({ sessionId: record.id })).pipe(
            Effect.timeout(LIVE_WAIT),
            Effect.option
          )
          const saved = yield* runtime.load(record.id).pipe(Effect.catchAll(storeTrouble("reading the session")))
          const stopped = record.desiredState === "stopped"
          const common = {
            id: record.id,
            name: record.name,
            city: record.city,
            createdAt: DateTime.unsafeFromDate(record.createdAt),
            phoneNumber: Option.match(saved, { onNone: () => null, onSome: (r) => r.phoneNumber })
          }
          if (Option.isSome(live)) {
            const health = live.value
            return new SessionDetail({
              ...common,
              status: health.connection.status,
              reason: health.connection.reason,
              connectedAt: health.connection.connectedAt,
              lastActivityAt: health.lastActivityAt,
              messageQueue: health.messageQueue
            })
          }
          // The owner did not answer in time (moving, restarting): what it last saved.
          const depth = yield* outbox.depth(record.id).pipe(Effect.catchAll(storeTrouble("reading the queue")))
          const at = (date: Date | null) => date === null ? null : DateTime.unsafeFromDate(date)
          return new SessionDetail({
            ...common,
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
        .handle("get", ({ path }) => Effect.flatMap(sessionFor(path.sessionId), detail))
        .handle("update", ({ path, payload }) =>
          Effect.gen(function*() {
            let record = yield* sessionFor(path.sessionId)
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
            return yield* detail(record)
          }))
        .handle("stop", ({ path }) =>
          Effect.gen(function*() {
            yield* sessionFor(path.sessionId)
            // Recorded first: whichever node runs the session next keeps it stopped, even if this node never hears.
            yield* sessions.setDesiredState(path.sessionId, "stopped").pipe(
              Effect.catchAll(storeTrouble("stopping the session"))
            )
            return yield* router.send(new StopSession({ sessionId: path.sessionId })).pipe(
              routingErrors(path.sessionId)
            )
          }))
    })
)
