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

  it.effect("a waiting reader is handed the next offer, which takes up none of the capacity", () =>
    Effect.gen(function*() {
      const mailbox = Mailbox.make<{ n: number }>(1)
      const reader = yield* Effect.fork(mailbox.take)
      yield* Effect.yieldNow()
      expect(mailbox.offer(item(1))).toBe("queued")
      expect(yield* Fiber.join(reader)).toEqual(item(1))
      // Handed over, not queued: the capacity is still free.
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
      mailbox.offer(item(1))
      mailbox.offer(item(2))
      expect(yield* Fiber.join(reader)).toEqual([item(1)])
      mailbox.offer(item(3))
      mailbox.offer(item(4))
      mailbox.offer(item(5))
      expect(yield* mailbox.takeUpTo(3)).toEqual([item(2), item(3), item(4)])
      expect(mailbox.pollUpTo(10)).toEqual([item(5)])
    }))
})
