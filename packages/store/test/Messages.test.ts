import { assert, describe, it } from "@effect/vitest"
import { makeMessageId } from "@wacluster/domain/Ids"
import { ShardNumber } from "@wacluster/domain/Shard"
import { Effect, Option } from "effect"
import { Messages } from "../src/Messages.js"
import { ShardFences } from "../src/ShardFences.js"
import { seedSession, storeLayer } from "./support.js"

const fence = (shard: number, epoch: number) => ({ shard: ShardNumber.make(shard), epoch })

describe("Messages", () => {
  it.layer(storeLayer("messages"))((it) => {
    it.effect("records a message WhatsApp delivers twice only once", () =>
      Effect.gen(function*() {
        const messages = yield* Messages
        const session = yield* seedSession({ shard: 3 })
        yield* (yield* ShardFences).advance(3, 1)
        const inbound = {
          sessionId: session.id,
          direction: "inbound" as const,
          remoteJid: "628111222333@s.whatsapp.net",
          body: { text: "hello" },
          status: "received",
          waMessageId: "3EB0AAAA"
        }
        assert.isTrue(yield* messages.insert(fence(3, 1), { ...inbound, id: yield* makeMessageId }))
        assert.isFalse(yield* messages.insert(fence(3, 1), { ...inbound, id: yield* makeMessageId }))
        assert.deepStrictEqual(yield* messages.countBySession(session.id), { sent: 0, received: 1 })
      }))

    it.effect("moves an outbound message forward on receipts, never back, and only for the fence's owner", () =>
      Effect.gen(function*() {
        const messages = yield* Messages
        const session = yield* seedSession({ shard: 4 })
        yield* (yield* ShardFences).advance(4, 1)
        yield* messages.insert(fence(4, 1), {
          id: yield* makeMessageId,
          sessionId: session.id,
          direction: "outbound",
          remoteJid: "628111222333@s.whatsapp.net",
          body: { text: "hi" },
          status: "sent",
          waMessageId: "3EB0BBBB"
        })
        assert.isTrue(Option.isSome(yield* messages.recordReceipt(fence(4, 1), session.id, "3EB0BBBB", "read")))
        // A late "delivered" after "read" changes nothing.
        assert.isTrue(Option.isNone(yield* messages.recordReceipt(fence(4, 1), session.id, "3EB0BBBB", "delivered")))
        assert.isTrue(Option.isNone(yield* messages.recordReceipt(fence(4, 1), session.id, "unknown", "delivered")))
        yield* (yield* ShardFences).advance(4, 2)
        const stale = yield* Effect.flip(messages.recordReceipt(fence(4, 1), session.id, "3EB0BBBB", "read"))
        assert.strictEqual(stale._tag, "StaleEpoch")
      }))
  })
})
