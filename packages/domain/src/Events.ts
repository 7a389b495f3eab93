/**
 * Events: what happened to a session or a message, as NATS subscribers and webhook endpoints get it. Every event is
 * published to the JetStream stream `WA_EVENTS` on `wa.evt.<tenantId>.<sessionId>.<type>` (tenant first, so NATS
 * permissions can give a tenant exactly its own), with its id as the message id (JetStream drops a repeat), and only
 * once the change it tells of is committed to Postgres.
 *
 * The envelope is the one the product's webhook handler reads: `{ id, type, timestamp, tenantId, data: { sessionId,
 * … } }`.
 */
import { Schema } from "effect"
import { EventId, SessionId, TenantId } from "./Ids.js"

export const EVENTS_STREAM = "WA_EVENTS"

export const EventType = Schema.Literal(
  "session.status",
  "session.qr-updated",
  "session.socket-connected",
  "session.socket-disconnected",
  "session.expired",
  "session.logged-out",
  "session.deleted",
  "message.received",
  "message-personal.received",
  "message.sent",
  "message.delivered",
  "message.read",
  "message.failed",
  "webhook.disabled"
)
export type EventType = typeof EventType.Type

export const eventSubject = (tenantId: string, sessionId: string, type: EventType): string =>
  `wa.evt.${tenantId}.${sessionId}.${type}`

/** What every event's data holds: the session, and what the type adds. */
export const EventData = Schema.Struct(
  { sessionId: SessionId },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)
export type EventData = typeof EventData.Type

export class EventEnvelope extends Schema.Class<EventEnvelope>("EventEnvelope")({
  id: EventId,
  type: EventType,
  timestamp: Schema.DateTimeUtc,
  tenantId: TenantId,
  data: EventData
}) {}

export const EventEnvelopeJson = Schema.parseJson(EventEnvelope)
