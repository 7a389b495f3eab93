/**
 * The HTTP contract of webhook endpoints: a session's endpoints (url, event filter, enabled, a `whsec_` secret shown
 * once, rotation), their delivery log and manual redelivery. Managed with the tenant token, like the session's keys:
 * an endpoint receives everything that happens to the session.
 */
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { ConflictJson, NotFoundJson } from "./ApiErrors.js"
import { TenantAuth } from "./Auth.js"
import { EventType } from "./Events.js"
import { DeliveryId, SessionId, WebhookId } from "./Ids.js"
import { PageLimit } from "./Paging.js"

/** The most endpoints one session may have. */
export const MAX_WEBHOOKS_PER_SESSION = 20

const WebhookUrl = Schema.Trim.pipe(
  Schema.minLength(1, { message: () => "url must not be empty" }),
  Schema.maxLength(2048, { message: () => "url must be at most 2048 characters" })
).annotations({
  description: "Where events are posted: http(s), not a private, loopback or link-local address"
})

const EventTypes = Schema.Array(EventType).pipe(
  Schema.maxItems(EventType.literals.length),
  Schema.filter((types) => new Set(types).size === types.length || "eventTypes must not repeat a type")
).annotations({ description: "The event types the endpoint gets; empty or left out: every type" })

export class CreateWebhook extends Schema.Class<CreateWebhook>("CreateWebhook")({
  url: WebhookUrl,
  eventTypes: Schema.optional(EventTypes),
  enabled: Schema.optional(Schema.Boolean)
}) {}

export class UpdateWebhook extends Schema.Class<UpdateWebhook>("UpdateWebhook")({
  url: Schema.optional(WebhookUrl),
  eventTypes: Schema.optional(EventTypes),
  enabled: Schema.optional(Schema.Boolean.annotations({
    description: "false: the endpoint gets nothing until enabled again; true also turns on one that was turned " +
      "off because it kept failing (what it missed meanwhile is then delivered)"
  }))
}) {}

export class WebhookView extends Schema.Class<WebhookView>("WebhookView")({
  id: WebhookId,
  sessionId: SessionId,
  url: Schema.String,
  eventTypes: Schema.Array(EventType),
  enabled: Schema.Boolean,
  disabledReason: Schema.NullOr(Schema.String).annotations({
    description: "Why the endpoint was turned off when it kept failing; null otherwise"
  }),
  createdAt: Schema.DateTimeUtc,
  updatedAt: Schema.DateTimeUtc
}) {}

export class WebhookCreated extends WebhookView.extend<WebhookCreated>("WebhookCreated")({
  secret: Schema.String.annotations({
    description: "The signing secret (whsec_…) to verify deliveries with. Shown once: store it now."
  })
}) {}

export class WebhookList extends Schema.Class<WebhookList>("WebhookList")({
  webhooks: Schema.Array(WebhookView)
}) {}

export class WebhookDeleted extends Schema.Class<WebhookDeleted>("WebhookDeleted")({
  id: WebhookId,
  deleted: Schema.Literal(true)
}) {}

export class RotatedSecret extends Schema.Class<RotatedSecret>("RotatedSecret")({
  id: WebhookId,
  secret: Schema.String.annotations({ description: "The new signing secret. Shown once: store it now." }),
  previousSecretValidUntil: Schema.DateTimeUtc.annotations({
    description: "Until then deliveries are signed with both secrets"
  })
}) {}

export class DeliveryView extends Schema.Class<DeliveryView>("DeliveryView")({
  id: DeliveryId,
  eventId: Schema.String,
  eventType: Schema.String,
  attempt: Schema.Int.annotations({ description: "1 for the first attempt at this event, then 2, 3, …" }),
  manual: Schema.Boolean.annotations({ description: "A redelivery asked for by hand" }),
  succeeded: Schema.Boolean,
  statusCode: Schema.NullOr(Schema.Int).annotations({ description: "null when the endpoint did not answer" }),
  latencyMs: Schema.Int,
  error: Schema.NullOr(Schema.String),
  attemptedAt: Schema.DateTimeUtc
}) {}

export class DeliveryPage extends Schema.Class<DeliveryPage>("DeliveryPage")({
  deliveries: Schema.Array(DeliveryView),
  nextCursor: Schema.NullOr(Schema.String).annotations({
    description: "Pass as cursor for the next (older) page; null on the last page"
  })
}) {}

export class Redelivery extends Schema.Class<Redelivery>("Redelivery")({
  deliveryId: DeliveryId,
  eventId: Schema.String,
  status: Schema.Literal("queued")
}) {}

const sessionIdParam = HttpApiSchema.param("sessionId", SessionId)
const webhookIdParam = HttpApiSchema.param("webhookId", WebhookId)
const deliveryIdParam = HttpApiSchema.param("deliveryId", DeliveryId)

export class WebhooksApi extends HttpApiGroup.make("webhooks")
  .add(
    HttpApiEndpoint.post("create")`/sessions/${sessionIdParam}/webhooks`
      .setPayload(CreateWebhook)
      .addSuccess(WebhookCreated, { status: 201 })
      .addError(NotFoundJson)
      .addError(ConflictJson)
      .annotate(
        OpenApi.Description,
        `Adds an endpoint (at most ${MAX_WEBHOOKS_PER_SESSION} per session). Events are posted as JSON signed the ` +
          "Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature); the secret is in this answer only."
      )
  )
  .add(
    HttpApiEndpoint.get("list")`/sessions/${sessionIdParam}/webhooks`
      .addSuccess(WebhookList)
      .addError(NotFoundJson)
      .annotate(OpenApi.Description, "The session's endpoints, oldest first; never their secrets")
  )
  .add(
    HttpApiEndpoint.get("get")`/sessions/${sessionIdParam}/webhooks/${webhookIdParam}`
      .addSuccess(WebhookView)
      .addError(NotFoundJson)
  )
  .add(
    HttpApiEndpoint.patch("update")`/sessions/${sessionIdParam}/webhooks/${webhookIdParam}`
      .setPayload(UpdateWebhook)
      .addSuccess(WebhookView)
      .addError(NotFoundJson)
      .annotate(OpenApi.Description, "Changes the url, the event filter or whether it is enabled")
  )
  .add(
    HttpApiEndpoint.del("delete")`/sessions/${sessionIdParam}/webhooks/${webhookIdParam}`
      .addSuccess(WebhookDeleted)
      .addError(NotFoundJson)
      .annotate(OpenApi.Description, "Removes the endpoint with its queue and delivery log")
  )
  .add(
    HttpApiEndpoint.post("rotateSecret")`/sessions/${sessionIdParam}/webhooks/${webhookIdParam}/rotate-secret`
      .addSuccess(RotatedSecret)
      .addError(NotFoundJson)
      .annotate(
        OpenApi.Description,
        "A new signing secret, shown once. The old one keeps signing beside it for WEBHOOK_SECRET_GRACE (24 h by " +
          "default), so receivers can switch without missing a delivery."
      )
  )
  .add(
    HttpApiEndpoint.get("deliveries")`/sessions/${sessionIdParam}/webhooks/${webhookIdParam}/deliveries`
      .setUrlParams(Schema.Struct({ limit: Schema.optional(PageLimit), cursor: Schema.optional(Schema.String) }))
      .addSuccess(DeliveryPage)
      .addError(NotFoundJson)
      .annotate(
        OpenApi.Description,
        "The endpoint's delivery log, newest first: every attempt with its status code, latency and error"
      )
  )
  .add(
    HttpApiEndpoint.post(
      "redeliver"
    )`/sessions/${sessionIdParam}/webhooks/${webhookIdParam}/deliveries/${deliveryIdParam}/redeliver`
      .addSuccess(Redelivery, { status: 202 })
      .addError(NotFoundJson)
      .addError(ConflictJson)
      .annotate(
        OpenApi.Description,
        "Posts the delivery's event to the endpoint again (same webhook-id), ahead of what it has not had yet"
      )
  )
  .middleware(TenantAuth)
  .annotate(OpenApi.Description, "Webhook endpoints of a session, with the tenant token")
{}
