import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, DateTime, Effect, Either, Exit, FastCheck as fc, Schema } from "effect"
import { MessageId, SessionId } from "../src/Ids.js"
import { readAccepted, readQueueText, writeAccepted, writeQueueText } from "../src/internal/queueTextJson.js"
import { AcceptedMessage, CommandError, GetStatus, QueueText, RateLimited } from "../src/Protocol.js"
import { decodeCommand, decodeReply, encodeCommand, encodeReply, SessionCommandJson } from "../src/ProtocolJson.js"

// The hand-written codecs must be indistinguishable from the Schema codecs: the same text out, and for any text in,
// the same command or reply (or a failure where Schema fails).
/** Schema's decoder, with a throw counted as a failure (its unions throw on some discriminators, see ProtocolJson). */
const eitherDecoder = <A>(schema: Schema.Schema<A, string>) => {
  const decode = Schema.decodeUnknownEither(schema)
  return (text: unknown): Either.Either<A, unknown> => {
    try {
      return decode(text)
    } catch (error) {
      return Either.left(error)
    }
  }
}
const schemaEncodeCommand = Schema.encodeSync(SessionCommandJson)
const schemaDecodeCommand = eitherDecoder(SessionCommandJson)
const QueueTextReply = Schema.parseJson(
  Schema.Exit({ success: AcceptedMessage, failure: CommandError, defect: Schema.Defect })
)
const schemaEncodeReply = Schema.encodeSync(QueueTextReply)
const schemaDecodeReply = eitherDecoder(QueueTextReply)

const queueTexts = Arbitrary.make(QueueText)
const accepted = Arbitrary.make(AcceptedMessage)
const anyCommand = new QueueText({
  sessionId: SessionId.make("sess_abcdefghijklmnopqrst"),
  to: "6281234567890@s.whatsapp.net",
  text: "hi",
  idempotencyKey: null
})

/** The hand-written reader took it (undefined: it left it to the schema) and agreed with the schema. */
const agrees = <A>(ours: A | undefined, theirs: Either.Either<A, unknown>) => {
  if (ours === undefined) return
  expect(Either.isRight(theirs) && theirs.right).toStrictEqual(ours)
}

/** Replaces, adds or removes one field of a JSON object, somewhere in it, with any JSON value. */
const mutated = (json: Record<string, unknown>) =>
  fc.tuple(
    fc.constantFrom(...Object.keys(json), "caller", "keyId", "requestsPerMinute", "createdAt", "value", "_tag"),
    fc.oneof(
      fc.jsonValue(),
      fc.constant(undefined),
      fc.constantFrom(
        "sess_abcdefghijklmnopqrst",
        "sess_short",
        "key_abcdefghijklmnopqrst",
        "msg_abcdefghijklmnopqrst",
        "msg_abcdefghijklmnopqrs!",
        "2026-12-07T05:00:00.000Z",
        "2026-12-07",
        "2026-12-07T05:00:00+02:00",
        "not a date",
        1.5,
        -0,
        2 ** 60
      )
    ),
    fc.boolean()
  ).map(([key, value, nested]) => {
    const copy = structuredClone(json)
    const target = nested && typeof copy.caller === "object" && copy.caller !== null
      ? copy.caller as Record<string, unknown>
      : nested && typeof copy.value === "object" && copy.value !== null
      ? copy.value as Record<string, unknown>
      : copy
    if (value === undefined) delete target[key]
    else target[key] = value
    return JSON.stringify(copy)
  })

const sameOutcome = <A>(ours: Either.Either<A, unknown>, theirs: Either.Either<A, unknown>) => {
  expect(ours._tag).toBe(theirs._tag)
  if (Either.isRight(ours) && Either.isRight(theirs)) expect(ours.right).toStrictEqual(theirs.right)
}

describe("ProtocolJson", () => {
  it("writes a QueueText exactly as its schema does", () => {
    fc.assert(fc.property(queueTexts, (command) => {
      expect(writeQueueText(command)).toBe(schemaEncodeCommand(command))
      expect(encodeCommand(command)).toBe(schemaEncodeCommand(command))
    }))
  })

  it("reads a QueueText exactly as its schema does", () => {
    fc.assert(fc.property(queueTexts, (command) => {
      const text = schemaEncodeCommand(command)
      const ours = readQueueText(text)
      expect(ours).toBeInstanceOf(QueueText)
      agrees(ours, schemaDecodeCommand(text))
      sameOutcome(Effect.runSync(Effect.either(decodeCommand(text))), schemaDecodeCommand(text))
    }))
  })

  it("reads any text as the schema would: the same command, or a failure where it fails", () => {
    fc.assert(
      fc.property(queueTexts.chain((command) => mutated(JSON.parse(schemaEncodeCommand(command)))), (text) => {
        agrees(readQueueText(text), schemaDecodeCommand(text))
        sameOutcome(Effect.runSync(Effect.either(decodeCommand(text))), schemaDecodeCommand(text))
      }),
      { numRuns: 2000 }
    )
    for (const text of ["", "null", "[]", "{", "\"QueueText\"", "{\"_tag\":\"QueueText\"}", "{\"_tag\":\"Nope\"}"]) {
      sameOutcome(Effect.runSync(Effect.either(decodeCommand(text))), schemaDecodeCommand(text))
    }
    // A tag Schema's union throws on (found by this property): a failure that says so, not a defect.
    for (const tag of ["{\"toString\":false}", "{\"toString\":{},\"valueOf\":1}"]) {
      const text = `{"_tag":${tag},"sessionId":"sess_abcdefghijklmnopqrst","to":"","text":"hi","idempotencyKey":null}`
      const decoded = Effect.runSync(Effect.either(decodeCommand(text)))
      expect(Either.isLeft(decoded) && decoded.left._tag).toBe("ParseError")
      expect(Either.isLeft(decoded) && decoded.left.message).toContain("unreadable: Cannot convert object")
    }
  })

  it("leaves other commands to their schema", () => {
    const command = new GetStatus({ sessionId: SessionId.make("sess_abcdefghijklmnopqrst") })
    expect(encodeCommand(command)).toBe(schemaEncodeCommand(command))
    expect(Effect.runSync(decodeCommand(encodeCommand(command)))).toStrictEqual(command)
  })

  it("writes a QueueText's success and failures exactly as the schema does", () => {
    fc.assert(fc.property(accepted, (message) => {
      expect(writeAccepted(Exit.succeed(message))).toBe(schemaEncodeReply(Exit.succeed(message)))
      expect(Effect.runSync(encodeReply(anyCommand, Exit.succeed(message)))).toBe(
        schemaEncodeReply(Exit.succeed(message))
      )
    }))
    const refused = Exit.fail(
      new RateLimited({
        sessionId: anyCommand.sessionId,
        kind: "messages",
        scope: "key",
        limit: 10,
        windowSeconds: 3600,
        retryAfterMs: 1000,
        resetMs: 5000
      })
    )
    expect(writeAccepted(refused)).toBeUndefined()
    expect(Effect.runSync(encodeReply(anyCommand, refused))).toBe(schemaEncodeReply(refused))
  })

  it("reads any reply to a QueueText as the schema would", () => {
    fc.assert(
      fc.property(
        accepted.chain((message) => mutated(JSON.parse(schemaEncodeReply(Exit.succeed(message))))),
        (text) => {
          agrees(readAccepted(text), Either.map(schemaDecodeReply(text), (exit) => Exit.isSuccess(exit) && exit.value))
          sameOutcome(Effect.runSync(Effect.either(decodeReply(anyCommand, text))), schemaDecodeReply(text))
        }
      ),
      { numRuns: 2000 }
    )
    const good = new AcceptedMessage({
      messageId: MessageId.make("msg_abcdefghijklmnopqrst"),
      status: "queued",
      createdAt: DateTime.unsafeMake("2026-12-07T05:00:00.000Z")
    })
    const text = schemaEncodeReply(Exit.succeed(good))
    expect(readAccepted(text)).toStrictEqual(good)
    const odd = Effect.runSync(Effect.either(decodeReply(anyCommand, "{\"_tag\":{\"toString\":false}}")))
    expect(Either.isLeft(odd) && odd.left._tag).toBe("ParseError")
    expect(Effect.runSync(decodeReply(anyCommand, text))).toStrictEqual(Exit.succeed(good))
    fc.assert(fc.property(accepted, (message) => {
      const reply = schemaEncodeReply(Exit.succeed(message))
      expect(readAccepted(reply)).toStrictEqual(message)
    }))
  })
})
