/**
 * The JSON that commands and their replies travel as on `wa.rpc.<shard>`: the Schema encodings of `SessionCommand`
 * and of each command's `Exit`, with that command's own success and failure schemas.
 *
 * A send crosses four of these codecs (command and reply, each encoded and decoded), and through Schema they took
 * about a fifth of the gateway's CPU and an eighth of the owner's. So the send's own command (QueueText) and its
 * success have hand-written codecs in front: they write exactly what the Schema codecs write, and take only what the
 * Schema codecs would read the same way. Anything else (every failure, a field out of shape) goes through Schema.
 */
import { Effect, Exit, ParseResult, Schema } from "effect"
import { readAccepted, readQueueText, writeAccepted, writeQueueText } from "./internal/queueTextJson.js"
import {
  AcceptedMessage,
  CommandError,
  PairingCode,
  PairingError,
  QrCode,
  SendError,
  SentText,
  SessionCommand,
  SessionHealthView,
  SessionStatusView,
  Unlinked
} from "./Protocol.js"

export const SessionCommandJson = Schema.parseJson(SessionCommand)

type Reply = Exit.Exit<unknown, CommandError | SendError | PairingError>

/**
 * A Schema decoder that fails where Schema itself throws: its unions read the discriminator of the input with
 * `String()`, which throws for an object whose `toString` is no function (`{"_tag":{"toString":false}}`), and a
 * throw would be a defect where the requester deserves an answer.
 */
const decodeWithoutThrowing = <A>(schema: Schema.Schema<A, string>) => {
  const decode = Schema.decodeUnknown(schema)
  return (text: unknown): Effect.Effect<A, ParseResult.ParseError> =>
    Effect.suspend(() => decode(text)).pipe(
      Effect.catchAllDefect((defect) =>
        Effect.fail(
          new ParseResult.ParseError({
            issue: new ParseResult.Type(
              schema.ast,
              text,
              `unreadable: ${defect instanceof Error ? defect.message : "the decoder threw"}`
            )
          })
        )
      )
    )
}

const encodeCommandSchema = Schema.encodeSync(SessionCommandJson)
const decodeCommandSchema = decodeWithoutThrowing(SessionCommandJson)

/** A command as JSON (what the gateway sends). */
export const encodeCommand = (command: SessionCommand): string =>
  (command._tag === "QueueText" ? writeQueueText(command) : undefined) ?? encodeCommandSchema(command)

/**
 * A command from its JSON when a hand-written codec reads it (a queued text), at once; undefined for anything that
 * needs `decodeCommand`.
 */
export const readCommand = (text: string): SessionCommand | undefined => readQueueText(text)

/** A command from its JSON (what the owner receives); a ParseError says what is wrong with it. */
export const decodeCommand = (text: string): Effect.Effect<SessionCommand, ParseResult.ParseError> => {
  const command = readCommand(text)
  return command === undefined ? decodeCommandSchema(text) : Effect.succeed(command)
}

/**
 * The reply to a command: its `Exit` as JSON, with that command's own success and failure schemas. The codecs
 * are built once per command type: building a schema per request would also defeat the parser's memoisation.
 */
const replyCodec = <A, I, E = CommandError, EI = typeof CommandError.Encoded>(
  success: Schema.Schema<A, I>,
  failure: Schema.Schema<E, EI> = CommandError as unknown as Schema.Schema<E, EI>
) => {
  const json = Schema.parseJson(Schema.Exit({ success, failure, defect: Schema.Defect }))
  return { decode: decodeWithoutThrowing(json), encode: Schema.encodeUnknown(json) }
}

const statusReply = replyCodec(SessionStatusView)
const voidReply = replyCodec(Schema.Void)

const replies = {
  GetStatus: statusReply,
  EnsureStarted: voidReply,
  GetQr: replyCodec(QrCode),
  Reconnect: statusReply,
  GetHealth: replyCodec(SessionHealthView),
  RequestPairingCode: replyCodec(PairingCode, PairingError),
  QueueText: replyCodec(AcceptedMessage),
  SendText: replyCodec(SentText, SendError),
  StopSession: statusReply,
  UnlinkSession: replyCodec(Unlinked),
  Charge: voidReply,
  SetRateLimits: voidReply
} satisfies Record<SessionCommand["_tag"], unknown>

/**
 * A command's reply as JSON when a hand-written codec writes it (a queued text's success), at once; undefined for
 * anything that needs `encodeReply`.
 */
export const writeReply = (command: SessionCommand, exit: Reply): string | undefined =>
  command._tag === "QueueText" ? writeAccepted(exit) : undefined

/** A command's reply as JSON (what the owner answers). */
export const encodeReply = (command: SessionCommand, exit: Reply): Effect.Effect<string, ParseResult.ParseError> => {
  const text = writeReply(command, exit)
  return text === undefined ? replies[command._tag].encode(exit) : Effect.succeed(text)
}

/**
 * A command's reply from its JSON when a hand-written codec reads it (a queued text's success), at once; undefined
 * for anything that needs `decodeReply`.
 */
export const readReply = (command: SessionCommand, text: string): Reply | undefined => {
  const accepted = command._tag === "QueueText" ? readAccepted(text) : undefined
  return accepted === undefined ? undefined : Exit.succeed(accepted)
}

/** A command's reply from its JSON (what the gateway receives). */
export const decodeReply = (command: SessionCommand, text: string): Effect.Effect<Reply, ParseResult.ParseError> => {
  const read = readReply(command, text)
  return read === undefined ? replies[command._tag].decode(text) : Effect.succeed(read)
}
