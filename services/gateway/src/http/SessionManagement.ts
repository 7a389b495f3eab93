/**
 * What only the tenant may do to a session: delete it, and issue, list and revoke its API keys. A session's own key
 * cannot mint keys (it would escape its own rate limits) nor delete the session.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { SqlClient } from "@effect/sql"
import { Nats } from "@wacluster/cluster/Nats"
import { Router } from "@wacluster/cluster/Router"
import {
  ApiKeyList,
  ApiKeyView,
  IssuedApiKey,
  KeyRateLimit,
  RevokedApiKey,
  SessionDeleted,
  WaclusterApi
} from "@wacluster/domain/Api"
import { NotFound } from "@wacluster/domain/ApiErrors"
import { credentialsRevokedSubject } from "@wacluster/domain/Control"
import { makeApiKeyId, makeEventId } from "@wacluster/domain/Ids"
import { UnlinkSession } from "@wacluster/domain/Protocol"
import { type ApiKeyRecord, ApiKeys } from "@wacluster/store/ApiKeys"
import { Events } from "@wacluster/store/Events"
import { Sessions } from "@wacluster/store/Sessions"
import { DateTime, Effect, Option } from "effect"
import { API_KEY_PREFIX, hashSecret, newSecret, VISIBLE_PREFIX } from "../Secrets.js"
import { ownedSession, storeTrouble } from "./Access.js"
import { routingErrors } from "./Routing.js"

const limitsOf = (key: ApiKeyRecord) =>
  new KeyRateLimit({ requestsPerMinute: key.requestsPerMinute, messagesPerHour: key.messagesPerHour })

const toView = (key: ApiKeyRecord) =>
  new ApiKeyView({
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    createdAt: DateTime.unsafeFromDate(key.createdAt),
    lastUsedAt: key.lastUsedAt === null ? null : DateTime.unsafeFromDate(key.lastUsedAt),
    rateLimit: limitsOf(key)
  })

export const SessionManagementLive = HttpApiBuilder.group(
  WaclusterApi,
  "sessionManagement",
  (handlers) =>
    Effect.gen(function*() {
      const router = yield* Router
      const sessions = yield* Sessions
      const keys = yield* ApiKeys
      const events = yield* Events
      const sql = yield* SqlClient.SqlClient
      const nats = yield* Nats
      /** Every gateway drops its cached keys now rather than within CREDENTIAL_CACHE_TTL (best effort: core NATS). */
      const announceRevocation = () => nats.connection.publish(credentialsRevokedSubject)

      return handlers
        .handle("delete", ({ path }) =>
          Effect.gen(function*() {
            const record = yield* ownedSession(path.sessionId)
            // Stopped first, so no node starts it again while it is unlinked; deleted only once its owner has
            // unlinked it and stopped for good (an owner that cannot be reached: 503, nothing deleted, retry).
            yield* sessions.setDesiredState(path.sessionId, "stopped").pipe(
              Effect.catchAll(storeTrouble("deleting the session"))
            )
            const unlinked = yield* router.send(new UnlinkSession({ sessionId: path.sessionId })).pipe(
              routingErrors(path.sessionId)
            )
            // Keys, live state, credentials, history and queue go with it (foreign keys cascade); gateways stop
            // accepting its keys within CREDENTIAL_CACHE_TTL (at most a second).
            // The session.deleted event is committed with the deletion; the shard's owner publishes it.
            const deleted = yield* Effect.map(makeEventId, (id) => ({
              id,
              tenantId: record.tenantId,
              type: "session.deleted" as const,
              data: { sessionId: record.id, deviceUnlinked: unlinked.deviceUnlinked }
            }))
            yield* sql.withTransaction(
              Effect.zipRight(events.appendUnfenced(record.shard, deleted), sessions.delete(path.sessionId))
            ).pipe(Effect.catchAll(storeTrouble("deleting the session")))
            announceRevocation()
            yield* Effect.logInfo("session deleted").pipe(
              Effect.annotateLogs({ sessionId: path.sessionId, deviceUnlinked: unlinked.deviceUnlinked })
            )
            return new SessionDeleted({
              sessionId: path.sessionId,
              deleted: true,
              deviceUnlinked: unlinked.deviceUnlinked,
              detail: unlinked.detail
            })
          }))
        .handle("createKey", ({ path, payload }) =>
          Effect.gen(function*() {
            yield* ownedSession(path.sessionId)
            const secret = newSecret(API_KEY_PREFIX)
            const created = yield* keys.create({
              id: yield* makeApiKeyId,
              sessionId: path.sessionId,
              name: payload.name,
              prefix: secret.slice(0, VISIBLE_PREFIX),
              keyHash: hashSecret(secret),
              requestsPerMinute: payload.rateLimit?.requestsPerMinute ?? null,
              messagesPerHour: payload.rateLimit?.messagesPerHour ?? null
            }).pipe(Effect.catchAll(storeTrouble("issuing the key")))
            yield* Effect.logInfo("API key issued").pipe(
              Effect.annotateLogs({ sessionId: path.sessionId, keyId: created.id })
            )
            return new IssuedApiKey({
              id: created.id,
              name: created.name,
              prefix: created.prefix,
              key: secret,
              createdAt: DateTime.unsafeFromDate(created.createdAt),
              rateLimit: limitsOf(created)
            })
          }))
        .handle("listKeys", ({ path }) =>
          Effect.gen(function*() {
            yield* ownedSession(path.sessionId)
            const active = yield* keys.listActiveBySession(path.sessionId).pipe(
              Effect.catchAll(storeTrouble("listing the keys"))
            )
            return new ApiKeyList({ keys: active.map(toView) })
          }))
        .handle("revokeKey", ({ path }) =>
          Effect.gen(function*() {
            yield* ownedSession(path.sessionId)
            const revoked = yield* keys.revoke(path.sessionId, path.keyId).pipe(
              Effect.catchAll(storeTrouble("revoking the key"))
            )
            if (Option.isNone(revoked) || revoked.value.revokedAt === null) {
              return yield* new NotFound({ message: `no key ${path.keyId} on session ${path.sessionId}` })
            }
            announceRevocation()
            yield* Effect.logInfo("API key revoked").pipe(
              Effect.annotateLogs({ sessionId: path.sessionId, keyId: path.keyId })
            )
            return new RevokedApiKey({
              id: revoked.value.id,
              revokedAt: DateTime.unsafeFromDate(revoked.value.revokedAt)
            })
          }))
    })
)
