/**
 * The NATS command/reply protocol between gateways and the node that owns a shard.
 * A request on `wa.rpc.<shard>` carries one `SessionCommand`; the reply is the command's `Exit`,
 * encoded with `Schema.exitSchema`, so both sides share one typed contract.
 */
import { type Effect, type Exit, type ParseResult, Schema } from "effect"
import { SessionId } from "./Ids.js"
import { SessionHealth, SessionStatus } from "./Session.js"
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

export const CommandError = Schema.Union(SessionUnknown, NotOwner, SessionBusy)
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
  payload: { sessionId: SessionId }
}) {}

/** Start the session's actor if it is not running (sent after a session is created). */
export class EnsureStarted extends Schema.TaggedRequest<EnsureStarted>()("EnsureStarted", {
  failure: CommandError,
  success: Schema.Void,
  payload: { sessionId: SessionId }
}) {}

export const SessionCommand = Schema.Union(GetStatus, EnsureStarted)
export type SessionCommand = typeof SessionCommand.Type

export const SessionCommandJson = Schema.parseJson(SessionCommand)

/** The reply to a command: its `Exit` as JSON, decoded with that command's own success and failure schemas. */
const exitJson = <A, I, E, EI>(request: Schema.WithResult<A, I, E, EI, never>) =>
  Schema.parseJson(Schema.exitSchema(request))

export const decodeReply = (
  command: SessionCommand,
  text: string
): Effect.Effect<Exit.Exit<unknown, CommandError>, ParseResult.ParseError> => {
  switch (command._tag) {
    case "GetStatus":
      return Schema.decodeUnknown(exitJson(command))(text)
    case "EnsureStarted":
      return Schema.decodeUnknown(exitJson(command))(text)
  }
}

export const encodeReply = (
  command: SessionCommand,
  exit: Exit.Exit<unknown, CommandError>
): Effect.Effect<string, ParseResult.ParseError> => {
  switch (command._tag) {
    case "GetStatus":
      return Schema.encodeUnknown(exitJson(command))(exit)
    case "EnsureStarted":
      return Schema.encodeUnknown(exitJson(command))(exit)
  }
}
