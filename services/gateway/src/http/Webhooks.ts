/**
 * Webhook endpoints of a session (tenant token): created with a `whsec_` secret shown once and kept encrypted,
 * listed without secrets, changed, rotated, removed; their delivery log, and redelivery by hand. A url is checked by
 * the SSRF guard (after DNS resolution) before it is stored; deliveries check it again.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { WaclusterApi } from "@wacluster/domain/Api"
import { BadRequest, Conflict, NotFound } from "@wacluster/domain/ApiErrors"
import { EventType } from "@wacluster/domain/Events"
import { DeliveryId, makeWebhookId, type SessionId, type WebhookId } from "@wacluster/domain/Ids"
import {
  DeliveryPage,
  DeliveryView,
  MAX_WEBHOOKS_PER_SESSION,
  Redelivery,
  RotatedSecret,
  WebhookCreated,
  WebhookDeleted,
  WebhookList,
  WebhookView
} from "@wacluster/domain/WebhooksApi"
import { AuthCipher } from "@wacluster/store/AuthCipher"
import { type DeliveryRecord, WebhookQueue } from "@wacluster/store/WebhookQueue"
import { secretPurpose, type WebhookRecord, Webhooks } from "@wacluster/store/Webhooks"
import * as Signature from "@wacluster/webhooks/Signature"
import { checkUrl, policyConfig } from "@wacluster/webhooks/TargetGuard"
import { secretGraceConfig } from "@wacluster/webhooks/WebhookConfig"
import { DateTime, Duration, Effect, Option, Schema } from "effect"
import { ownedSession, storeTrouble } from "./Access.js"
import { makePageCursor } from "./PageCursor.js"

const DEFAULT_PAGE = 50
const cursor = makePageCursor(DeliveryId)
const eventTypes = Schema.decodeUnknownSync(Schema.Array(EventType))

const toView = (record: WebhookRecord) =>
  new WebhookView({
    id: record.id,
    sessionId: record.sessionId,
    url: record.url,
    eventTypes: eventTypes(record.eventTypes),
    enabled: record.enabled,
    disabledReason: record.disabledReason,
    createdAt: DateTime.unsafeFromDate(record.createdAt),
    updatedAt: DateTime.unsafeFromDate(record.updatedAt)
  })

const toDeliveryView = (delivery: DeliveryRecord) =>
  new DeliveryView({
    id: delivery.id,
    eventId: delivery.eventId,
    eventType: delivery.eventType,
    attempt: delivery.attempt,
    manual: delivery.manual,
    succeeded: delivery.succeeded,
    statusCode: delivery.statusCode,
    latencyMs: delivery.latencyMs,
    error: delivery.error,
    attemptedAt: DateTime.unsafeFromDate(delivery.attemptedAt)
  })

const notFound = (sessionId: SessionId, webhookId: WebhookId) =>
  new NotFound({ message: `no webhook ${webhookId} on session ${sessionId}` })

export const WebhooksLive = HttpApiBuilder.group(
  WaclusterApi,
  "webhooks",
  (handlers) =>
    Effect.gen(function*() {
      const webhooks = yield* Webhooks
      const queue = yield* WebhookQueue
      const cipher = yield* AuthCipher
      const policy = yield* policyConfig
      const grace = yield* secretGraceConfig

      const seal = (sessionId: SessionId, webhookId: WebhookId, secret: string) =>
        cipher.encrypt(sessionId, secretPurpose(webhookId), Buffer.from(secret, "utf8"))

      /** The url as stored, once the guard let it through; what it refused, said as a 400. */
      const allowedUrl = (raw: string) =>
        checkUrl(policy, raw).pipe(
          Effect.map((url) => url.href),
          Effect.mapError((refused) => new BadRequest({ message: `url: ${refused.reason}` }))
        )

      const existing = (sessionId: SessionId, webhookId: WebhookId) =>
        Effect.gen(function*() {
          yield* ownedSession(sessionId)
          const record = yield* webhooks.get(sessionId, webhookId).pipe(
            Effect.catchAll(storeTrouble("reading the webhook"))
          )
          if (Option.isNone(record)) return yield* notFound(sessionId, webhookId)
          return record.value
        })

      return handlers
        .handle("create", ({ path, payload }) =>
          Effect.gen(function*() {
            yield* ownedSession(path.sessionId)
            const url = yield* allowedUrl(payload.url)
            const id = yield* makeWebhookId
            const secret = Signature.newSecret()
            const created = yield* webhooks.create({
              id,
              sessionId: path.sessionId,
              url,
              eventTypes: payload.eventTypes ?? [],
              enabled: payload.enabled ?? true,
              secret: yield* seal(path.sessionId, id, secret)
            }, MAX_WEBHOOKS_PER_SESSION).pipe(
              Effect.catchAll(storeTrouble("creating the webhook")),
              // Counted in the same transaction as the insert: concurrent creations cannot go past the limit.
              Effect.flatMap(Option.match({
                onNone: () =>
                  new Conflict({
                    message: `a session may have at most ${MAX_WEBHOOKS_PER_SESSION} webhooks; delete one first`
                  }),
                onSome: Effect.succeed
              }))
            )
            yield* Effect.logInfo("webhook created").pipe(Effect.annotateLogs({ sessionId: path.sessionId, id }))
            return new WebhookCreated({ ...toView(created), secret })
          }))
        .handle("list", ({ path }) =>
          Effect.gen(function*() {
            yield* ownedSession(path.sessionId)
            const all = yield* webhooks.list(path.sessionId).pipe(Effect.catchAll(storeTrouble("listing the webhooks")))
            return new WebhookList({ webhooks: all.map(toView) })
          }))
        .handle("get", ({ path }) => Effect.map(existing(path.sessionId, path.webhookId), toView))
        .handle("update", ({ path, payload }) =>
          Effect.gen(function*() {
            yield* ownedSession(path.sessionId)
            if (payload.url === undefined && payload.eventTypes === undefined && payload.enabled === undefined) {
              return yield* new BadRequest({ message: "nothing to change: give url, eventTypes or enabled" })
            }
            const url = payload.url === undefined ? undefined : yield* allowedUrl(payload.url)
            const updated = yield* webhooks.update(path.sessionId, path.webhookId, {
              url,
              eventTypes: payload.eventTypes,
              enabled: payload.enabled
            }).pipe(Effect.catchAll(storeTrouble("changing the webhook")))
            if (Option.isNone(updated)) return yield* notFound(path.sessionId, path.webhookId)
            return toView(updated.value)
          }))
        .handle("delete", ({ path }) =>
          Effect.gen(function*() {
            yield* ownedSession(path.sessionId)
            const deleted = yield* webhooks.delete(path.sessionId, path.webhookId).pipe(
              Effect.catchAll(storeTrouble("deleting the webhook"))
            )
            if (!deleted) return yield* notFound(path.sessionId, path.webhookId)
            return new WebhookDeleted({ id: path.webhookId, deleted: true })
          }))
        .handle("rotateSecret", ({ path }) =>
          Effect.gen(function*() {
            yield* ownedSession(path.sessionId)
            const secret = Signature.newSecret()
            const until = new Date(Date.now() + Duration.toMillis(grace))
            const rotated = yield* webhooks.rotateSecret(
              path.sessionId,
              path.webhookId,
              yield* seal(path.sessionId, path.webhookId, secret),
              until
            ).pipe(Effect.catchAll(storeTrouble("rotating the secret")))
            if (Option.isNone(rotated)) return yield* notFound(path.sessionId, path.webhookId)
            return new RotatedSecret({
              id: path.webhookId,
              secret,
              previousSecretValidUntil: DateTime.unsafeFromDate(until)
            })
          }))
        .handle("deliveries", ({ path, urlParams }) =>
          Effect.gen(function*() {
            yield* existing(path.sessionId, path.webhookId)
            const limit = urlParams.limit ?? DEFAULT_PAGE
            const after = yield* cursor.parse(urlParams.cursor)
            const rows = yield* queue.deliveries(path.webhookId, {
              limit: limit + 1,
              before: Option.getOrUndefined(
                Option.map(after, (position) => ({ attemptedAt: position.createdAt, id: position.id }))
              )
            }).pipe(Effect.catchAll(storeTrouble("reading the delivery log")))
            return new DeliveryPage({
              deliveries: rows.slice(0, limit).map(toDeliveryView),
              nextCursor: cursor.next(rows.map((row) => ({ createdAt: row.attemptedAt, id: row.id })), limit)
            })
          }))
        .handle("redeliver", ({ path }) =>
          Effect.gen(function*() {
            const endpoint = yield* existing(path.sessionId, path.webhookId)
            if (!endpoint.enabled) {
              return yield* new Conflict({
                message: "the webhook is turned off: enable it first (PATCH with enabled: true)"
              })
            }
            const eventId = yield* queue.redeliver(path.webhookId, path.deliveryId).pipe(
              Effect.catchAll(storeTrouble("queuing the redelivery"))
            )
            if (Option.isNone(eventId)) {
              return yield* new NotFound({
                message: `no delivery ${path.deliveryId} in the log of webhook ${path.webhookId}`
              })
            }
            return new Redelivery({ deliveryId: path.deliveryId, eventId: eventId.value, status: "queued" })
          }))
    })
)
