/**
 * Tenants create and list their sessions. Creating one records it (city permanent), issues its first API
 * key, and asks the shard's owner to start the actor right away; if no owner answers yet, the owner starts
 * it when it takes the shard (the desired state is in Postgres).
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { ClusterConfig } from "@wacluster/cluster/ClusterConfig"
import { Router } from "@wacluster/cluster/Router"
import { CreatedApiKey, Session, SessionCreated, SessionPage, WaclusterApi } from "@wacluster/domain/Api"
import { BadRequest } from "@wacluster/domain/ApiErrors"
import { CurrentTenant } from "@wacluster/domain/Auth"
import { findCity } from "@wacluster/domain/Cities"
import { makeApiKeyId, makeSessionId, SessionId } from "@wacluster/domain/Ids"
import { EnsureStarted } from "@wacluster/domain/Protocol"
import { shardOf } from "@wacluster/domain/Shard"
import { ApiKeys } from "@wacluster/store/ApiKeys"
import type { RuntimeRecord } from "@wacluster/store/SessionRuntime"
import { SessionRuntime } from "@wacluster/store/SessionRuntime"
import type { SessionRecord } from "@wacluster/store/Sessions"
import { Sessions } from "@wacluster/store/Sessions"
import { Cause, DateTime, Effect, Option } from "effect"
import { API_KEY_PREFIX, hashSecret, newSecret, VISIBLE_PREFIX } from "../Secrets.js"
import { makePageCursor } from "./PageCursor.js"

export const toSession = (record: SessionRecord, runtime: Option.Option<RuntimeRecord>) =>
  new Session({
    id: record.id,
    name: record.name,
    city: record.city,
    status: Option.match(runtime, { onNone: () => "connecting" as const, onSome: (r) => r.status }),
    reason: Option.match(runtime, { onNone: () => null, onSome: (r) => r.reason }),
    createdAt: DateTime.unsafeFromDate(record.createdAt),
    connectedAt: Option.match(runtime, {
      onNone: () => null,
      onSome: (r) => r.connectedAt === null ? null : DateTime.unsafeFromDate(r.connectedAt)
    })
  })

const cursors = makePageCursor(SessionId)

export const SessionsLive = HttpApiBuilder.group(WaclusterApi, "sessions", (handlers) =>
  Effect.gen(function*() {
    const sessions = yield* Sessions
    const keys = yield* ApiKeys
    const runtime = yield* SessionRuntime
    const router = yield* Router
    const { shards } = yield* ClusterConfig

    return handlers
      .handle("create", ({ payload }) =>
        Effect.gen(function*() {
          const { tenantId } = yield* CurrentTenant
          const city = findCity(payload.city)
          if (Option.isNone(city)) {
            return yield* new BadRequest({
              message: `unknown city "${payload.city}": GET /cities lists the 164 cities a session can use`,
              details: { field: "city", cities: "/cities" }
            })
          }
          const id = yield* makeSessionId
          const record = yield* sessions.create({
            id,
            tenantId,
            name: payload.name,
            city: city.value.slug,
            shard: shardOf(id, shards)
          }).pipe(Effect.orDie)
          const secret = newSecret(API_KEY_PREFIX)
          const key = yield* keys.create({
            id: yield* makeApiKeyId,
            sessionId: id,
            name: "default",
            prefix: secret.slice(0, VISIBLE_PREFIX),
            keyHash: hashSecret(secret),
            requestsPerMinute: null,
            messagesPerHour: null
          }).pipe(Effect.orDie)
          // Best effort, and brief: the owner also starts every running session of its shards by itself. The
          // session is recorded by now, so nothing the owner answers (a defect included) may fail the create: the
          // caller would retry and get a second session.
          yield* router.send(new EnsureStarted({ sessionId: id })).pipe(
            Effect.timeout("1 second"),
            Effect.catchAllCause((cause) =>
              Cause.isInterruptedOnly(cause) ?
                Effect.interrupt :
                Effect.logInfo("session recorded; its owner will start it when it takes the shard").pipe(
                  Effect.annotateLogs({
                    sessionId: id,
                    why: Cause.isFailType(cause) ? cause.error._tag : Cause.pretty(cause)
                  })
                )
            )
          )
          const current = yield* runtime.load(id).pipe(Effect.orDie)
          yield* Effect.logInfo("session created").pipe(Effect.annotateLogs({ sessionId: id, city: city.value.slug }))
          return new SessionCreated({
            session: toSession(record, current),
            apiKey: new CreatedApiKey({ id: key.id, name: key.name, prefix: key.prefix, key: secret })
          })
        }))
      .handle("list", ({ urlParams }) =>
        Effect.gen(function*() {
          const { tenantId } = yield* CurrentTenant
          const limit = urlParams.limit ?? 100
          const after = yield* cursors.parse(urlParams.cursor)
          const rows = yield* sessions.listByTenant(tenantId, { limit: limit + 1, after: Option.getOrUndefined(after) })
            .pipe(Effect.orDie)
          const page = rows.slice(0, limit)
          const states = yield* runtime.loadMany(page.map((row) => row.id)).pipe(Effect.orDie)
          return new SessionPage({
            sessions: page.map((row) => toSession(row, Option.fromNullable(states.get(row.id)))),
            nextCursor: cursors.next(rows, limit)
          })
        }))
  }))
