import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc, Schema } from "effect"
import { MAX_TEXT_LENGTH, plainSendMessage, SendMessage } from "../src/Api.js"

const decode = Schema.decodeUnknownEither(SendMessage)

const recipients = fc.oneof(
  fc.constantFrom(
    "+6281234567890",
    "6281234567890",
    "+62 812-3456-7890",
    "(62) 812.3456.7890",
    "6281234567890@s.whatsapp.net",
    " 6281234567890@C.US ",
    "0812345678",
    "+12",
    "6281234567890@g.us",
    "abc",
    ""
  ),
  fc.string(),
  fc.stringMatching(/^\+?[0-9 ()-]{0,20}$/)
)
const texts = fc.oneof(
  fc.constantFrom("hello", "", "   ", "\u3000\n", "x".repeat(MAX_TEXT_LENGTH), "x".repeat(MAX_TEXT_LENGTH + 1)),
  fc.string(),
  fc.fullUnicodeString()
)
const bodies = fc.oneof(
  fc.record({ to: recipients, text: texts }),
  fc.record({ to: recipients, text: texts, extra: fc.jsonValue() }),
  fc.record({ to: fc.jsonValue(), text: fc.jsonValue() }, { requiredKeys: [] }),
  fc.jsonValue(),
  fc.constant([])
)

describe("plainSendMessage", () => {
  it("takes only what the SendMessage schema takes, as the schema takes it", () => {
    fc.assert(
      fc.property(bodies, (body) => {
        const plain = plainSendMessage(body)
        const decoded = decode(body)
        if (plain !== undefined) expect(Either.isRight(decoded) && decoded.right).toStrictEqual(plain)
        if (Either.isLeft(decoded)) expect(plain).toBeUndefined()
      }),
      { numRuns: 3000 }
    )
  })

  it("takes the bodies tenants send", () => {
    for (const to of ["+6281234567890", "6281234567890@s.whatsapp.net", "+62 812-3456-7890"]) {
      expect(plainSendMessage({ to, text: "hello" })).toStrictEqual(
        new SendMessage({ to: "6281234567890@s.whatsapp.net", text: "hello" })
      )
    }
  })
})
