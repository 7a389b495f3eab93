/**
 * The NATS command/reply protocol between gateways and the node that owns a shard.
 * A request on `wa.rpc.<shard>` carries one `SessionCommand`; the reply is the command's `Exit`, so both sides share
 * one typed contract (as JSON: ProtocolJson.ts).
 */
import { DateTime, Duration, Schema } from "effect"
import { ApiKeyId, MessageId, SessionId } from "./Ids.js"
import { SessionHealth, SessionReason, SessionStatus } from "./Session.js"
import { ShardNumber } from "./Shard.js"

export const rpcSubject = (shard: number): string => `wa.rpc.${shard}`

/** The owner has no such session (deleted, or never existed in this shard). */
export class SessionUnknown extends Schema.TaggedError<SessionUnknown>()("SessionUnknown", {
  sessionId: SessionId
}) {}

/** The receiving node does not own the shard (any more): the gateway retries. */
export class NotOwner extends Schema.TaggedError<NotOwner>()("NotOwner", {
  shard: ShardNumber
}) {}

/** The session actor's mailbox is full; the request may be retried later. */
export class SessionBusy extends Schema.TaggedError<SessionBusy>()("SessionBusy", {
  sessionId: SessionId
}) {}

/** The owner could not read the session from Postgres (down, restarting, overloaded); the request may be retried. */
export class StorageUnavailable extends Schema.TaggedError<StorageUnavailable>()("StorageUnavailable", {
  sessionId: SessionId
}) {}

/** A rate limit of the session (or of the key used) refused the request; nothing was done or counted. */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  sessionId: SessionId,
  /** requests (per minute) or messages (texts queued per hour). */
  kind: Schema.Literal("requests", "messages"),
  scope: Schema.Literal("session", "key"),
  /** What the limit allows per window. */
  limit: Schema.Int,
  windowSeconds: Schema.Int,
  /** Until this request could be allowed. */
  retryAfterMs: Schema.NonNegative,
  /** Until the limit's whole allowance is back. */
  resetMs: Schema.NonNegative
}) {}

/**
 * Who asked, for the session's rate limits: a request made with an API key counts against the key's own limits
 * too. Internal commands carry none and are not counted.
 */
export class Caller extends Schema.Class<Caller>("Caller")({
  keyId: Schema.NullOr(ApiKeyId),
  requestsPerMinute: Schema.NullOr(Schema.Int),
  messagesPerHour: Schema.NullOr(Schema.Int)
}) {}

export const CommandError = Schema.Union(SessionUnknown, NotOwner, SessionBusy, StorageUnavailable, RateLimited)
export type CommandError = typeof CommandError.Type

export class StatusMetrics extends Schema.Class<StatusMetrics>("StatusMetrics")({
  messagesSent: Schema.NonNegativeInt,
  messagesReceived: Schema.NonNegativeInt,
  uptime: Schema.Number.pipe(Schema.between(0, 100)).annotations({
    description: "percentage of time connected since the session was started, one decimal"
  })
}) {}

/** Exactly the product's status document (`GET /sessions/{sessionId}/status`). */
export class SessionStatusView extends Schema.Class<SessionStatusView>("SessionStatusView")({
  sessionId: SessionId,
  status: SessionStatus,
  connectedAt: Schema.NullOr(Schema.DateTimeUtc),
  health: SessionHealth,
  metrics: StatusMetrics
}) {}

export class GetStatus extends Schema.TaggedRequest<GetStatus>()("GetStatus", {
  failure: CommandError,
  success: SessionStatusView,
  payload: { sessionId: SessionId, caller: Schema.optional(Caller) }
}) {}

/** Start the session's actor if it is not running (sent after a session is created). */
export class EnsureStarted extends Schema.TaggedRequest<EnsureStarted>()("EnsureStarted", {
  failure: CommandError,
  success: Schema.Void,
  payload: { sessionId: SessionId }
}) {}

/** The QR code a session shows while it waits to be linked, if any. */
export class QrCode extends Schema.Class<QrCode>("QrCode")({
  sessionId: SessionId,
  status: SessionStatus,
  reason: Schema.NullOr(SessionReason),
  qr: Schema.NullOr(Schema.String).annotations({
    description: "the string to encode as a QR code and scan from WhatsApp > Linked devices; null when none is shown"
  }),
  expiresAt: Schema.NullOr(Schema.DateTimeUtc).annotations({ description: "when WhatsApp replaces this code" })
}) {}

export class GetQr extends Schema.TaggedRequest<GetQr>()("GetQr", {
  failure: CommandError,
  success: QrCode,
  payload: { sessionId: SessionId, caller: Schema.optional(Caller) }
}) {}

/**
 * Reconnect a session that is not connected: at once, without waiting out a backoff or a park; with a new QR
 * code when it was logged out or its QR codes expired. A connected session is left alone.
 */
export class Reconnect extends Schema.TaggedRequest<Reconnect>()("Reconnect", {
  failure: CommandError,
  success: SessionStatusView,
  payload: { sessionId: SessionId, caller: Schema.optional(Caller) }
}) {}

/** The session has no live WhatsApp connection to send with. */
export class NotConnected extends Schema.TaggedError<NotConnected>()("NotConnected", {
  sessionId: SessionId,
  status: SessionStatus,
  reason: Schema.NullOr(SessionReason)
}) {}

/** WhatsApp did not take the message. */
export class SendFailed extends Schema.TaggedError<SendFailed>()("SendFailed", {
  sessionId: SessionId,
  message: Schema.String
}) {}

export const SendError = Schema.Union(
  SessionUnknown,
  NotOwner,
  SessionBusy,
  StorageUnavailable,
  RateLimited,
  NotConnected,
  SendFailed
)
export type SendError = typeof SendError.Type

export class SentText extends Schema.Class<SentText>("SentText")({
  messageId: MessageId,
  waMessageId: Schema.String
}) {}

/** Sends a text now over the live socket (the durable queue in front of it belongs to the tenant API). */
export class SendText extends Schema.TaggedRequest<SendText>()("SendText", {
  failure: SendError,
  success: SentText,
  payload: {
    sessionId: SessionId,
    /** E.164 digits or a WhatsApp JID. */
    to: Schema.String,
    text: Schema.String
  }
}) {}

/** A text accepted into the session's durable queue (or, for a repeated idempotency key, the first one). */
export class AcceptedMessage extends Schema.Class<AcceptedMessage>("AcceptedMessage")({
  messageId: MessageId,
  status: Schema.String.annotations({ description: "queued, then sent, delivered, read, or failed" }),
  createdAt: Schema.DateTimeUtc
}) {}

/**
 * Queues a text in the session's durable outbound queue; the session sends queued texts in order whenever it is
 * connected, and they survive node restarts and failover.
 */
export class QueueText extends Schema.TaggedRequest<QueueText>()("QueueText", {
  failure: CommandError,
  success: AcceptedMessage,
  payload: {
    sessionId: SessionId,
    /** A WhatsApp JID (the gateway turns E.164 numbers into one). */
    to: Schema.String,
    text: Schema.String,
    idempotencyKey: Schema.NullOr(Schema.String),
    caller: Schema.optional(Caller)
  }
}) {}

export class ProxyHealthView extends Schema.Class<ProxyHealthView>("ProxyHealthView")({
  /** The proxy URL with its password masked. */
  url: Schema.String,
  /** The sticky part of the username: this session's residential exit; it changes when the proxy fails. */
  sticky: Schema.String,
  healthy: Schema.Boolean,
  consecutiveFailures: Schema.NonNegativeInt,
  failures: Schema.NonNegativeInt,
  rotations: Schema.NonNegativeInt,
  lastError: Schema.NullOr(Schema.String),
  lastFailureAt: Schema.NullOr(Schema.DateTimeUtc),
  lastSuccessAt: Schema.NullOr(Schema.DateTimeUtc)
}) {}

export class ConnectionHealth extends Schema.Class<ConnectionHealth>("ConnectionHealth")({
  status: SessionStatus,
  reason: Schema.NullOr(SessionReason),
  /** The dashboard's light: green when connected, red otherwise. */
  indicator: Schema.Literal("green", "red"),
  connectedAt: Schema.NullOr(Schema.DateTimeUtc),
  phoneNumber: Schema.NullOr(Schema.String).annotations({
    description: "the linked WhatsApp account's phone number (digits only); null until a phone links the session"
  })
}) {}

/** Texts waiting in the durable queue to be sent. */
export class MessageQueueHealth extends Schema.Class<MessageQueueHealth>("MessageQueueHealth")({
  pending: Schema.NonNegativeInt,
  oldestQueuedAt: Schema.NullOr(Schema.DateTimeUtc).annotations({ description: "null when nothing waits" }),
  oldestAgeSeconds: Schema.NullOr(Schema.NonNegative).annotations({
    description: "how long the oldest pending text has waited, in seconds; null when nothing waits"
  })
}) {}

/** The queue panel for `pending` texts, the oldest queued at `oldestAt`, as of `now`. */
export const messageQueueHealth = (pending: number, oldestAt: Date | null, now: Date) =>
  new MessageQueueHealth({
    pending,
    oldestQueuedAt: oldestAt === null ? null : DateTime.unsafeFromDate(oldestAt),
    oldestAgeSeconds: oldestAt === null
      ? null
      : Math.max(0, Math.round((now.getTime() - oldestAt.getTime()) / 100) / 10)
  })

/** The session's health panel: connection, last activity, message queue, and the city proxy it goes through. */
export class SessionHealthView extends Schema.Class<SessionHealthView>("SessionHealthView")({
  sessionId: SessionId,
  connection: ConnectionHealth,
  lastActivityAt: Schema.NullOr(Schema.DateTimeUtc).annotations({
    description: "time of the last message sent or received"
  }),
  messageQueue: MessageQueueHealth,
  proxy: Schema.NullOr(ProxyHealthView).annotations({ description: "null when the session connects directly" })
}) {}

export class GetHealth extends Schema.TaggedRequest<GetHealth>()("GetHealth", {
  failure: CommandError,
  success: SessionHealthView,
  payload: { sessionId: SessionId, caller: Schema.optional(Caller) }
}) {}

/** The session cannot take a pairing code now (it is linked, or not waiting to be linked). */
export class PairingUnavailable extends Schema.TaggedError<PairingUnavailable>()("PairingUnavailable", {
  sessionId: SessionId,
  status: SessionStatus,
  reason: Schema.NullOr(SessionReason),
  message: Schema.String
}) {}

export const PairingError = Schema.Union(
  SessionUnknown,
  NotOwner,
  SessionBusy,
  StorageUnavailable,
  RateLimited,
  PairingUnavailable
)
export type PairingError = typeof PairingError.Type

export class PairingCode extends Schema.Class<PairingCode>("PairingCode")({
  sessionId: SessionId,
  phoneNumber: Schema.String,
  pairingCode: Schema.String.annotations({
    description: "8 characters to type on the phone: WhatsApp > Linked devices > Link with phone number instead"
  })
}) {}

/** Links by phone number instead of a QR scan. */
export class RequestPairingCode extends Schema.TaggedRequest<RequestPairingCode>()("RequestPairingCode", {
  failure: PairingError,
  success: PairingCode,
  payload: {
    sessionId: SessionId,
    /** Digits only, country code first (E.164 without the +). */
    phoneNumber: Schema.String,
    caller: Schema.optional(Caller)
  }
}) {}

/**
 * Stops the session (the tenant's "Stop Session"): its socket closes and it stays `disconnected`/`stopped` until a
 * Reconnect, on this node or any later owner (the gateway records the desired state first). Answers the status.
 */
export class StopSession extends Schema.TaggedRequest<StopSession>()("StopSession", {
  failure: CommandError,
  success: SessionStatusView,
  payload: { sessionId: SessionId, caller: Schema.optional(Caller) }
}) {}

/** What unlinking a session before its deletion did. */
export class Unlinked extends Schema.Class<Unlinked>("Unlinked")({
  sessionId: SessionId,
  /** The linked device was removed from the phone (WhatsApp > Linked devices); false when it could not be. */
  deviceUnlinked: Schema.Boolean,
  /** Why not, when it was not (never linked, logged out already, WhatsApp unreachable). */
  detail: Schema.NullOr(Schema.String)
}) {}

/**
 * Unlinks the session's device from the phone (logging in briefly with its saved credentials when it is not
 * connected), wipes its WhatsApp credentials and stops its actor for good: sent before the session is deleted.
 */
export class UnlinkSession extends Schema.TaggedRequest<UnlinkSession>()("UnlinkSession", {
  failure: CommandError,
  success: Unlinked,
  payload: { sessionId: SessionId, caller: Schema.optional(Caller) }
}) {}

/**
 * Counts a request the gateway answers by itself (the message history) against the session's rate limits; fails
 * with RateLimited when over.
 */
export class Charge extends Schema.TaggedRequest<Charge>()("Charge", {
  failure: CommandError,
  success: Schema.Void,
  payload: { sessionId: SessionId, caller: Caller }
}) {}

/** The session's own limits changed (null: the node's default), as recorded in Postgres. */
export class SetRateLimits extends Schema.TaggedRequest<SetRateLimits>()("SetRateLimits", {
  failure: CommandError,
  success: Schema.Void,
  payload: {
    sessionId: SessionId,
    requestsPerMinute: Schema.NullOr(Schema.Int),
    messagesPerHour: Schema.NullOr(Schema.Int)
  }
}) {}

export const SessionCommand = Schema.Union(
  GetStatus,
  EnsureStarted,
  GetQr,
  Reconnect,
  SendText,
  QueueText,
  GetHealth,
  RequestPairingCode,
  StopSession,
  UnlinkSession,
  Charge,
  SetRateLimits
)
export type SessionCommand = typeof SessionCommand.Type

/**
 * Commands that may take longer than a routed request normally waits, and how long: unlinking may log in with the
 * saved credentials first. The owner waits that long for its actor, and the gateway that long (and a little more)
 * for the reply, rather than sending the command again meanwhile.
 */
export const slowCommandTimeout = (command: SessionCommand): Duration.Duration | undefined =>
  command._tag === "UnlinkSession" ? Duration.seconds(30) : undefined
