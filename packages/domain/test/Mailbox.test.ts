import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import * as Mailbox from "../src/Mailbox.js"

const item = (n: number) => ({ n })

describe("Mailbox", () => {
  it.effect("gives items oldest first, and refuses an offer once it holds its capacity", () =>
    Effect.gen(function*() {
      const mailbox = Mailbox.make<{ n: number }>(2)
      expect(mailbox.offer(item(1))).toBe("queued")
      expect(mailbox.offer(item(2))).toBe("queued")
      expect(mailbox.offer(item(3))).toBe("full")
      expect(yield* mailbox.take).toEqual(item(1))
      expect(mailbox.offer(item(4))).toBe("queued")
      expect(yield* mailbox.take).toEqual(item(2))
      expect(yield* mailbox.take).toEqual(item(4))
    }))

  it.effect("a waiting reader gets the next offer", () =>
    Effect.gen(function*() {
      const mailbox = Mailbox.make<{ n: number }>(1)
      const reader = yield* Effect.fork(mailbox.take)
      yield* Effect.yieldNow()
      expect(mailbox.offer(item(1))).toBe("queued")
      expect(yield* Fiber.join(reader)).toEqual(item(1))
      expect(mailbox.offer(item(2))).toBe("queued")
      expect(mailbox.offer(item(3))).toBe("full")
    }))

  it.effect("an interrupted reader is forgotten: the next offer waits for the next take", () =>
    Effect.gen(function*() {
      const mailbox = Mailbox.make<{ n: number }>(4)
      const reader = yield* Effect.fork(mailbox.take)
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(reader)
      expect(mailbox.offer(item(1))).toBe("queued")
      expect(yield* mailbox.take).toEqual(item(1))
    }))

  it.effect("closing returns what was queued and refuses later offers; a take then is interrupted", () =>
    Effect.gen(function*() {
      const mailbox = Mailbox.make<{ n: number }>(4)
      mailbox.offer(item(1))
      mailbox.offer(item(2))
      expect(mailbox.close()).toEqual([item(1), item(2)])
      expect(mailbox.isOpen()).toBe(false)
      expect(mailbox.offer(item(3))).toBe("closed")
      const taken = yield* Effect.exit(mailbox.take)
      expect(Exit.isInterrupted(taken)).toBe(true)
    }))

  it.effect("takes up to a number of items, waiting for the first; polls what there is without waiting", () =>
    Effect.gen(function*() {
      const mailbox = Mailbox.make<{ n: number }>(Infinity)
      expect(mailbox.pollUpTo(10)).toEqual([])
      const reader = yield* Effect.fork(mailbox.takeUpTo(3))
      yield* Effect.yieldNow()
      // Both offered before the woken reader runs: it takes both.
      mailbox.offer(item(1))
      mailbox.offer(item(2))
      expect(yield* Fiber.join(reader)).toEqual([item(1), item(2)])
      for (const n of [3, 4, 5, 6]) mailbox.offer(item(n))
      expect(yield* mailbox.takeUpTo(3)).toEqual([item(3), item(4), item(5)])
      expect(mailbox.pollUpTo(10)).toEqual([item(6)])
    }))

  it.effect("an item offered as its reader is being interrupted is not lost: the reader has it, or the mailbox", () =>
    Effect.gen(function*() {
      const mailbox = Mailbox.make<{ n: number }>(4)
      const reader = yield* Effect.fork(mailbox.take)
      yield* Effect.yieldNow()
      // The interruption is on its way to the reader (it runs on the reader's next turn), and the offer comes first.
      yield* Fiber.interruptFork(reader)
      expect(mailbox.offer(item(1))).toBe("queued")
      const read = yield* Fiber.await(reader)
      const kept = Exit.isSuccess(read) ? [read.value] : mailbox.pollUpTo(4)
      expect(kept).toEqual([item(1)])
    }))
})
