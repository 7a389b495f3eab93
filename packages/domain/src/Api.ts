/**
 * The HTTP contract of the gateway. Handlers live in services/gateway; clients and the OpenAPI
 * document are derived from this one definition.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { ParseResult, Schema } from "effect"
import {
  BadRequestJson,
  ConflictJson,
  InternalErrorJson,
  NotFoundJson,
  PayloadTooLargeJson,
  ServiceUnavailableJson,
  TooManyRequestsJson,
  UnauthorizedJson
} from "./ApiErrors.js"
import { AdminAuth, SessionAccess, TenantAuth } from "./Auth.js"
import { City, Continent } from "./Cities.js"
import { ClusterOverview, NodeDrain } from "./Control.js"
import { ApiKeyId, MessageId, NodeId, SessionId, TenantId } from "./Ids.js"
import { PageLimit } from "./Paging.js"
import {
  AcceptedMessage,
  MessageQueueHealth,
  PairingCode,
  QrCode,
  SessionHealthView,
  SessionStatusView
} from "./Protocol.js"
import { SessionName, SessionReason, SessionStatus } from "./Session.js"
import { WebhooksApi } from "./WebhooksApi.js"

export class ProcessMemory extends Schema.Class<ProcessMemory>("ProcessMemory")({
  rssBytes: Schema.Number,
  heapUsedBytes: Schema.Number,
  externalBytes: Schema.Number
}) {}

export class Health extends Schema.Class<Health>("Health")({
  status: Schema.Literal("ok"),
  service: Schema.Literal("gateway", "node"),
  nodeId: Schema.optional(Schema.String),
  uptimeSeconds: Schema.Number,
  /** Nodes: how many session actors run here, and the process's memory (density at a glance). */
  sessions: Schema.optional(Schema.NonNegativeInt),
  memory: Schema.optional(ProcessMemory)
}) {}

export class HealthApi extends HttpApiGroup.make("health")
  .add(HttpApiEndpoint.get("healthz", "/healthz").addSuccess(Health))
  .annotate(OpenApi.Description, "Liveness of this process")
{}

export class Tenant extends Schema.Class<Tenant>("Tenant")({
  id: TenantId,
  name: Schema.String,
  createdAt: Schema.DateTimeUtc
}) {}

export class CreateTenant extends Schema.Class<CreateTenant>("CreateTenant")({
  name: Schema.Trim.pipe(Schema.minLength(1), Schema.maxLength(100))
}) {}

export class TenantCreated extends Schema.Class<TenantCreated>("TenantCreated")({
  tenant: Tenant,
  token: Schema.String.annotations({ description: "The tenant token. Shown once: store it now." })
}) {}

export class TenantsApi extends HttpApiGroup.make("tenants")
  .add(
    HttpApiEndpoint.post("create", "/tenants")
      .setPayload(CreateTenant)
      .addSuccess(TenantCreated, { status: 201 })
  )
  .middleware(AdminAuth)
  .annotate(OpenApi.Description, "Operators create tenants with the admin token")
{}

export class Session extends Schema.Class<Session>("Session")({
  id: SessionId,
  name: Schema.String,
  city: Schema.String.annotations({ description: "The city slug; permanent" }),
  status: SessionStatus,
  reason: Schema.NullOr(SessionReason),
  createdAt: Schema.DateTimeUtc,
  connectedAt: Schema.NullOr(Schema.DateTimeUtc)
}) {}

export class CreateSession extends Schema.Class<CreateSession>("CreateSession")({
  name: SessionName,
  city: Schema.String.annotations({
    description: "A city from GET /cities: its slug (\"sao-paulo\") or its name (\"São Paulo\"). Permanent."
  })
}) {}

export class CreatedApiKey extends Schema.Class<CreatedApiKey>("CreatedApiKey")({
  id: ApiKeyId,
  name: Schema.String,
  prefix: Schema.String,
  key: Schema.String.annotations({ description: "The secret API key. Shown once: store it now." })
}) {}

export class SessionCreated extends Schema.Class<SessionCreated>("SessionCreated")({
  session: Session,
  apiKey: CreatedApiKey
}) {}

export class SessionPage extends Schema.Class<SessionPage>("SessionPage")({
  sessions: Schema.Array(Session),
  nextCursor: Schema.NullOr(Schema.String)
}) {}

export { PageLimit }

export class SessionsApi extends HttpApiGroup.make("sessions")
  .add(
    HttpApiEndpoint.post("create", "/sessions")
      .setPayload(CreateSession)
      .addSuccess(SessionCreated, { status: 201 })
  )
  .add(
    HttpApiEndpoint.get("list", "/sessions")
      .setUrlParams(Schema.Struct({
        limit: Schema.optional(PageLimit),
        cursor: Schema.optional(Schema.String)
      }))
      .addSuccess(SessionPage)
  )
  .middleware(TenantAuth)
  .annotate(OpenApi.Description, "Tenants manage their sessions with their tenant token")
{}

const sessionIdParam = HttpApiSchema.param("sessionId", SessionId)

export class SessionStatusApi extends HttpApiGroup.make("sessionStatus")
  .add(
    HttpApiEndpoint.get("status")`/sessions/${sessionIdParam}/status`
      .addSuccess(SessionStatusView)
      .addError(NotFoundJson)
      .addError(ServiceUnavailableJson)
  )
  .middleware(SessionAccess)
  .annotate(OpenApi.Description, "The session's status, with its API key (x-api-key) or the tenant token")
{}

export const QrFormat = Schema.Literal("png", "svg", "raw").annotations({
  description: "png (image/png, the default), svg (image/svg+xml) or raw (JSON with the QR string)"
})
export type QrFormat = typeof QrFormat.Type

export class RequestPairing extends Schema.Class<RequestPairing>("RequestPairing")({
  phoneNumber: Schema.String.pipe(
    Schema.transform(Schema.String, {
      strict: true,
      // People write numbers with spaces, dashes, parentheses and a leading +.
      decode: (raw) => raw.replace(/[\s()+-]/g, ""),
      encode: (digits) => digits
    }),
    Schema.pattern(/^[1-9][0-9]{6,14}$/, {
      message: () => "phoneNumber must be an international number with its country code, e.g. +62 812 3456 7890"
    })
  )
}) {}

/**
 * Where a text goes: an international phone number (E.164; spaces, dashes, parentheses and the + are allowed) or a
 * WhatsApp JID, decoded to the JID WhatsApp expects.
 */
export const Recipient = Schema.String.pipe(
  Schema.transformOrFail(Schema.String, {
    strict: true,
    decode: (raw, _, ast) => {
      const jid = recipientJid(raw)
      if (jid !== undefined) return ParseResult.succeed(jid)
      return ParseResult.fail(
        new ParseResult.Type(
          ast,
          raw,
          "to must be a phone number with its country code (E.164, e.g. +6281234567890) or a WhatsApp JID " +
            "(6281234567890@s.whatsapp.net)"
        )
      )
    },
    encode: (jid) => ParseResult.succeed(jid)
  })
).annotations({ description: "E.164 number (+6281234567890) or WhatsApp JID (6281234567890@s.whatsapp.net)" })

/** The JID WhatsApp expects for a recipient as a tenant writes it; undefined when it names none. */
export const recipientJid = (raw: string): string | undefined => {
  const jid = raw.trim().toLowerCase().match(/^([1-9][0-9]{6,14})@(s\.whatsapp\.net|c\.us)$/)
  if (jid !== null) return `${jid[1]}@s.whatsapp.net`
  const digits = raw.replace(/[\s()+.-]/g, "")
  return /^[1-9][0-9]{6,14}$/.test(digits) ? `${digits}@s.whatsapp.net` : undefined
}

/** WhatsApp's own limit for one text. */
export const MAX_TEXT_LENGTH = 65_536

const isNotBlank = (text: string) => text.trim().length > 0
const isWithinLimit = (text: string) => text.length <= MAX_TEXT_LENGTH

export class SendMessage extends Schema.Class<SendMessage>("SendMessage")({
  to: Recipient,
  text: Schema.String.pipe(
    Schema.filter(isNotBlank, { message: () => "text must not be empty" }),
    Schema.filter(isWithinLimit, { message: () => `text must be at most ${MAX_TEXT_LENGTH} characters` })
  )
}) {}

/**
 * A parsed body as SendMessage without a Schema decode, when it is plainly one (the send fast lane's); undefined
 * otherwise, and then the schema tells what is wrong. It takes only what the schema would take, with the same checks.
 */
export const plainSendMessage = (body: unknown): SendMessage | undefined => {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined
  const { text, to } = body as { readonly to?: unknown; readonly text?: unknown }
  if (typeof to !== "string" || typeof text !== "string" || !isNotBlank(text) || !isWithinLimit(text)) {
    return undefined
  }
  const jid = recipientJid(to)
  return jid === undefined ? undefined : new SendMessage({ to: jid, text }, { disableValidation: true })
}

/** What an `Idempotency-Key` header may hold. */
export const isIdempotencyKey = (key: string) => key.length >= 1 && key.length <= 255

export const IdempotencyHeaders = Schema.Struct({
  "idempotency-key": Schema.optional(
    Schema.String.pipe(
      Schema.filter(isIdempotencyKey, { message: () => "Idempotency-Key must be 1 to 255 characters" })
    )
  )
})

export class SessionAccessApi extends HttpApiGroup.make("sessionAccess")
  .add(
    HttpApiEndpoint.get("qr")`/sessions/${sessionIdParam}/qr`
      .setUrlParams(Schema.Struct({ format: Schema.optional(QrFormat) }))
      .addSuccess(QrCode)
      .addError(NotFoundJson)
      .addError(ConflictJson)
      .addError(ServiceUnavailableJson)
      .annotate(
        OpenApi.Description,
        "The QR code to link the session (WhatsApp > Linked devices > Link a device), answered by the node that " +
          "runs it. 409 when the session shows none: connected, expired (reconnect it for a new one), or about " +
          "to log in with saved credentials."
      )
  )
  .add(
    HttpApiEndpoint.get("health")`/sessions/${sessionIdParam}/health`
      .addSuccess(SessionHealthView)
      .addError(NotFoundJson)
      .addError(ServiceUnavailableJson)
      .annotate(
        OpenApi.Description,
        "The session's health panel: connection status (green when connected, red otherwise), last activity, " +
          "and the health of its city proxy."
      )
  )
  .add(
    HttpApiEndpoint.post("pairingCode")`/sessions/${sessionIdParam}/pairing-code`
      .setPayload(RequestPairing)
      .addSuccess(PairingCode)
      .addError(NotFoundJson)
      .addError(ConflictJson)
      .addError(ServiceUnavailableJson)
      .annotate(
        OpenApi.Description,
        "Links the session by phone number instead of a QR scan: returns the 8-character code to type on that " +
          "phone (WhatsApp > Linked devices > Link a device > Link with phone number instead). The session must " +
          "be waiting to be linked (showing a QR code); 409 otherwise."
      )
  )
  .add(
    HttpApiEndpoint.post("sendMessage")`/sessions/${sessionIdParam}/messages`
      .setPayload(SendMessage)
      .setHeaders(IdempotencyHeaders)
      .addSuccess(AcceptedMessage, { status: 202 })
      .addError(NotFoundJson)
      .addError(ServiceUnavailableJson)
      .annotate(
        OpenApi.Description,
        "Queues a text: 202 with its messageId and status queued. The session sends its queue in order whenever " +
          "it is connected (queued texts survive node restarts and failover; the health panel shows how many " +
          "wait); a text not sent within OUTBOX_MAX_AGE fails. With an Idempotency-Key header, a repeat of the " +
          "request returns the first answer and queues nothing."
      )
  )
  .add(
    HttpApiEndpoint.post("reconnect")`/sessions/${sessionIdParam}/reconnect`
      .addSuccess(SessionStatusView, { status: 202 })
      .addError(NotFoundJson)
      .addError(ServiceUnavailableJson)
      .annotate(
        OpenApi.Description,
        "Reconnects a session that is not connected, at once (no waiting out a backoff). A session that was " +
          "logged out or whose QR codes expired shows a new QR code; one with valid credentials logs in again."
      )
  )
  .middleware(SessionAccess)
  .annotate(OpenApi.Description, "Session calls with the session's API key (x-api-key) or the tenant token")
{}

const PositiveCount = Schema.Int.pipe(Schema.between(1, 100_000_000))

/** A session's own rate limits; null: the cluster's defaults (SESSION_REQUESTS_PER_MINUTE, SESSION_MESSAGES_PER_HOUR). */
export class SessionRateLimit extends Schema.Class<SessionRateLimit>("SessionRateLimit")({
  requestsPerMinute: Schema.NullOr(PositiveCount).annotations({
    description: "Requests per minute the session takes, whatever the credentials; null: the cluster's default"
  }),
  messagesPerHour: Schema.NullOr(PositiveCount).annotations({
    description: "Texts per hour the session accepts into its queue; null: the cluster's default"
  })
}) {}

/** One session in full: what it is, how it is doing, and what waits in its queue. */
export class SessionDetail extends Schema.Class<SessionDetail>("SessionDetail")({
  id: SessionId,
  name: Schema.String,
  city: Schema.String.annotations({ description: "The city slug; permanent" }),
  status: SessionStatus,
  reason: Schema.NullOr(SessionReason),
  phoneNumber: Schema.NullOr(Schema.String).annotations({
    description: "The linked WhatsApp number (country code first, digits only); null while not linked"
  }),
  createdAt: Schema.DateTimeUtc,
  connectedAt: Schema.NullOr(Schema.DateTimeUtc),
  lastActivityAt: Schema.NullOr(Schema.DateTimeUtc).annotations({
    description: "time of the last message sent or received"
  }),
  messageQueue: MessageQueueHealth,
  rateLimit: SessionRateLimit
}) {}

export class UpdateSession extends Schema.Class<UpdateSession>("UpdateSession")({
  name: Schema.optional(SessionName),
  rateLimit: Schema.optional(
    Schema.Struct({
      requestsPerMinute: Schema.optional(Schema.NullOr(PositiveCount)),
      messagesPerHour: Schema.optional(Schema.NullOr(PositiveCount))
    }).annotations({ description: "The session's own limits; null returns one to the cluster's default" })
  ),
  city: Schema.optional(Schema.String.annotations({
    description: "Permanent: only the session's own city is accepted here (to use another, create a new session)"
  }))
}) {}

export class SessionDeleted extends Schema.Class<SessionDeleted>("SessionDeleted")({
  sessionId: SessionId,
  deleted: Schema.Literal(true),
  deviceUnlinked: Schema.Boolean.annotations({
    description: "WhatsApp was told to remove the linked device from the phone (Linked devices)"
  }),
  detail: Schema.NullOr(Schema.String).annotations({ description: "why the device was not unlinked, if it was not" })
}) {}

export class SessionLifecycleApi extends HttpApiGroup.make("sessionLifecycle")
  .add(
    HttpApiEndpoint.get("get")`/sessions/${sessionIdParam}`
      .addSuccess(SessionDetail)
      .addError(NotFoundJson)
      .addError(ServiceUnavailableJson)
      .annotate(
        OpenApi.Description,
        "The session: name, permanent city, status and reason, linked phone number, when it was created, " +
          "connected and last active, and its queue of texts waiting to be sent"
      )
  )
  .add(
    HttpApiEndpoint.patch("update")`/sessions/${sessionIdParam}`
      .setPayload(UpdateSession)
      .addSuccess(SessionDetail)
      .addError(NotFoundJson)
      .addError(ServiceUnavailableJson)
      .annotate(
        OpenApi.Description,
        "Renames the session and sets its own rate limits. The city is permanent (it decides the session's " +
          "residential proxy): asking for another city is a 400; create a new session in that city instead."
      )
  )
  .add(
    HttpApiEndpoint.post("stop")`/sessions/${sessionIdParam}/stop`
      .addSuccess(SessionStatusView, { status: 202 })
      .addError(NotFoundJson)
      .addError(ServiceUnavailableJson)
      .annotate(
        OpenApi.Description,
        "Stops the session: its WhatsApp connection closes and it stays disconnected (reason stopped), keeping " +
          "its link, keys, history and queued texts, until POST /sessions/{sessionId}/reconnect resumes it " +
          "(no QR code needed)."
      )
  )
  .middleware(SessionAccess)
  .annotate(OpenApi.Description, "A session's lifecycle, with the session's API key (x-api-key) or the tenant token")
{}

const keyIdParam = HttpApiSchema.param("keyId", ApiKeyId)

/** A key's own limits, on top of its session's. */
export class KeyRateLimit extends Schema.Class<KeyRateLimit>("KeyRateLimit")({
  requestsPerMinute: Schema.NullOr(PositiveCount).annotations({
    description: "Requests per minute this key may make; null: only the session's limit applies"
  }),
  messagesPerHour: Schema.NullOr(PositiveCount).annotations({
    description: "Texts per hour this key may queue; null: only the session's limit applies"
  })
}) {}

export class CreateApiKey extends Schema.Class<CreateApiKey>("CreateApiKey")({
  name: Schema.Trim.pipe(
    Schema.minLength(1, { message: () => "name must not be empty" }),
    Schema.maxLength(100, { message: () => "name must be at most 100 characters" })
  ),
  rateLimit: Schema.optional(Schema.Struct({
    requestsPerMinute: Schema.optional(PositiveCount),
    messagesPerHour: Schema.optional(PositiveCount)
  }))
}) {}

/** A key as listed: never its secret. */
export class ApiKeyView extends Schema.Class<ApiKeyView>("ApiKeyView")({
  id: ApiKeyId,
  name: Schema.String,
  prefix: Schema.String.annotations({ description: "The key's first characters, to recognise it" }),
  createdAt: Schema.DateTimeUtc,
  lastUsedAt: Schema.NullOr(Schema.DateTimeUtc).annotations({
    description: "When the key was last used (updated at most once a minute)"
  }),
  rateLimit: KeyRateLimit
}) {}

export class ApiKeyList extends Schema.Class<ApiKeyList>("ApiKeyList")({
  keys: Schema.Array(ApiKeyView)
}) {}

export class IssuedApiKey extends Schema.Class<IssuedApiKey>("IssuedApiKey")({
  id: ApiKeyId,
  name: Schema.String,
  prefix: Schema.String,
  key: Schema.String.annotations({ description: "The secret API key. Shown once: store it now." }),
  createdAt: Schema.DateTimeUtc,
  rateLimit: KeyRateLimit
}) {}

export class RevokedApiKey extends Schema.Class<RevokedApiKey>("RevokedApiKey")({
  id: ApiKeyId,
  revokedAt: Schema.DateTimeUtc
}) {}

export class SessionManagementApi extends HttpApiGroup.make("sessionManagement")
  .add(
    HttpApiEndpoint.del("delete")`/sessions/${sessionIdParam}`
      .addSuccess(SessionDeleted)
      .addError(NotFoundJson)
      .addError(ServiceUnavailableJson)
      .annotate(
        OpenApi.Description,
        "Deletes the session for good: unlinks its device from the phone (logging in briefly with its saved " +
          "credentials if it is not connected), revokes every API key, wipes its WhatsApp credentials, history " +
          "and queue. Afterwards every route of the session answers 404."
      )
  )
  .add(
    HttpApiEndpoint.post("createKey")`/sessions/${sessionIdParam}/keys`
      .setPayload(CreateApiKey)
      .addSuccess(IssuedApiKey, { status: 201 })
      .addError(NotFoundJson)
      .annotate(
        OpenApi.Description,
        "Issues another API key for the session, optionally with its own rate limits. The secret is in this " +
          "answer only: store it now."
      )
  )
  .add(
    HttpApiEndpoint.get("listKeys")`/sessions/${sessionIdParam}/keys`
      .addSuccess(ApiKeyList)
      .addError(NotFoundJson)
      .annotate(OpenApi.Description, "The session's working keys: name, prefix, created, last used; never the secret")
  )
  .add(
    HttpApiEndpoint.del("revokeKey")`/sessions/${sessionIdParam}/keys/${keyIdParam}`
      .addSuccess(RevokedApiKey)
      .addError(NotFoundJson)
      .annotate(
        OpenApi.Description,
        "Revokes the key: every gateway refuses it at once, and within a second at most. Revoking it again " +
          "answers the same."
      )
  )
  .middleware(TenantAuth)
  .annotate(
    OpenApi.Description,
    "What only the tenant may do to a session (tenant token): delete it, and issue and revoke its API keys"
  )
{}

export const MessageStatus = Schema.Literal("queued", "sent", "delivered", "read", "failed", "received").annotations({
  description: "outbound: queued → sent → delivered → read, or failed (see error); inbound: received"
})

/** One message of a session's history, in either direction. */
export class MessageView extends Schema.Class<MessageView>("MessageView")({
  messageId: MessageId,
  direction: Schema.Literal("inbound", "outbound"),
  jid: Schema.String.annotations({ description: "The contact's WhatsApp JID" }),
  phoneNumber: Schema.NullOr(Schema.String).annotations({
    description: "The contact's number (country code first, digits only) when the JID is a phone number"
  }),
  text: Schema.NullOr(Schema.String),
  status: MessageStatus,
  error: Schema.NullOr(Schema.String).annotations({ description: "Why a failed message failed" }),
  createdAt: Schema.DateTimeUtc,
  updatedAt: Schema.DateTimeUtc
}) {}

export class MessagePage extends Schema.Class<MessagePage>("MessagePage")({
  messages: Schema.Array(MessageView),
  nextCursor: Schema.NullOr(Schema.String).annotations({
    description: "Pass as cursor for the next (older) page; null on the last page"
  })
}) {}

const messageIdParam = HttpApiSchema.param("messageId", MessageId)

export class MessagesApi extends HttpApiGroup.make("messages")
  .add(
    HttpApiEndpoint.get("list")`/sessions/${sessionIdParam}/messages`
      .setUrlParams(Schema.Struct({
        direction: Schema.optional(Schema.Literal("inbound", "outbound")),
        contact: Schema.optional(Recipient),
        status: Schema.optional(MessageStatus),
        since: Schema.optional(Schema.DateTimeUtc.annotations({ description: "created at or after (ISO 8601)" })),
        until: Schema.optional(Schema.DateTimeUtc.annotations({ description: "created before (ISO 8601)" })),
        limit: Schema.optional(PageLimit),
        cursor: Schema.optional(Schema.String)
      }))
      .addSuccess(MessagePage)
      .addError(NotFoundJson)
      .addError(ServiceUnavailableJson)
      .annotate(
        OpenApi.Description,
        "The session's history in both directions, newest first, a page at a time (limit 1-500, default 100), " +
          "filtered by direction, contact (E.164 or JID), status and time"
      )
  )
  .add(
    HttpApiEndpoint.get("get")`/sessions/${sessionIdParam}/messages/${messageIdParam}`
      .addSuccess(MessageView)
      .addError(NotFoundJson)
      .addError(ServiceUnavailableJson)
      .annotate(OpenApi.Description, "One message, with its current status")
  )
  .middleware(SessionAccess)
  .annotate(OpenApi.Description, "Message history, with the session's API key (x-api-key) or the tenant token")
{}

const nodeIdParam = HttpApiSchema.param("nodeId", NodeId)

export class AdminApi extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.get("cluster", "/admin/cluster")
      .addSuccess(ClusterOverview)
      .addError(ServiceUnavailableJson)
      .annotate(OpenApi.Description, "Nodes, the shard → owner map with epochs, and the moves in progress")
  )
  .add(
    HttpApiEndpoint.post("drain")`/admin/nodes/${nodeIdParam}/drain`
      .addSuccess(NodeDrain, { status: 202 })
      .addError(NotFoundJson)
      .addError(ServiceUnavailableJson)
      .annotate(
        OpenApi.Description,
        "Moves every shard away from the node, a batch per heartbeat, and keeps it empty until the drain ends " +
          "or the node restarts"
      )
  )
  .add(
    HttpApiEndpoint.del("undrain")`/admin/nodes/${nodeIdParam}/drain`
      .addSuccess(NodeDrain)
      .addError(NotFoundJson)
      .addError(ServiceUnavailableJson)
      .annotate(OpenApi.Description, "Ends a drain: the node takes its share of the shards again")
  )
  .middleware(AdminAuth)
  .annotate(OpenApi.Description, "Operators see and steer the cluster with the admin token")
{}

export class CityList extends Schema.Class<CityList>("CityList")({
  count: Schema.NonNegativeInt,
  cities: Schema.Array(City)
}) {}

export class CitiesApi extends HttpApiGroup.make("cities")
  .add(
    HttpApiEndpoint.get("list", "/cities")
      .setUrlParams(Schema.Struct({
        continent: Schema.optional(Continent),
        country: Schema.optional(Schema.String.annotations({ description: "ISO 3166-1 alpha-2 country code" }))
      }))
      .addSuccess(CityList)
  )
  .annotate(OpenApi.Description, "The cities a session can be created in (each decides the session's proxy)")
{}

export class WaclusterApi extends HttpApi.make("wacluster")
  .add(HealthApi)
  .add(CitiesApi)
  .add(TenantsApi)
  .add(SessionsApi)
  .add(SessionStatusApi)
  .add(SessionAccessApi)
  .add(SessionLifecycleApi)
  .add(SessionManagementApi)
  .add(MessagesApi)
  .add(WebhooksApi)
  .add(AdminApi)
  .addError(BadRequestJson)
  .addError(UnauthorizedJson)
  .addError(NotFoundJson)
  .addError(PayloadTooLargeJson)
  .addError(TooManyRequestsJson)
  .addError(InternalErrorJson)
  .annotate(OpenApi.Title, "wacluster")
{}

/** The node's own HTTP surface: health (and later metrics). */
export class NodeApi extends HttpApi.make("wacluster-node").add(HealthApi) {}
