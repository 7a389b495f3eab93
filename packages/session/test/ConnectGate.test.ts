import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Random } from "effect"
import * as ConnectGate from "../src/ConnectGate.js"

/** Lets every fiber that can run, run. */
const settle = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

describe("ConnectGate", () => {
  it.effect("lets `permits` through at once; the rest get their turns in the order they came, one per release", () =>
    Effect.gen(function*() {
      const gate = yield* ConnectGate.make(3)
      const entered: Array<number> = []
      const done = yield* Deferred.make<void>()
      for (let i = 0; i < 2_000; i++) {
        yield* Effect.fork(gate.withPermit(Effect.zipRight(Effect.sync(() => entered.push(i)), Deferred.await(done))))
      }
      yield* settle
      expect(entered).toEqual([0, 1, 2])
      expect(yield* gate.state).toEqual({ free: 0, waiting: 1_997 })

      // Each release lets exactly the next waiter in.
      for (let turn = 3; turn < 10; turn++) {
        yield* gate.release
        yield* settle
        expect(entered.length).toBe(turn + 1)
        expect(entered[turn]).toBe(turn)
        expect((yield* gate.state).waiting).toBe(2_000 - turn - 1)
      }
    }))

  it.effect("a waiter interrupted before its turn leaves the queue; the permit goes to the next one", () =>
    Effect.gen(function*() {
      const gate = yield* ConnectGate.make(1)
      const hold = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(gate.withPermit(Deferred.await(hold)))
      yield* settle
      const entered: Array<string> = []
      const first = yield* Effect.fork(gate.withPermit(Effect.sync(() => entered.push("first"))))
      const second = yield* Effect.fork(gate.withPermit(Effect.sync(() => entered.push("second"))))
      yield* settle
      yield* Fiber.interrupt(first)
      expect(yield* gate.state).toEqual({ free: 0, waiting: 1 })
      yield* Deferred.succeed(hold, undefined)
      yield* Fiber.join(holder)
      yield* Fiber.join(second)
      expect(entered).toEqual(["second"])
      expect(yield* gate.state).toEqual({ free: 1, waiting: 0 })
    }))

  it.effect("a waiter handed its permit as it is interrupted does not keep it", () =>
    Effect.gen(function*() {
      const gate = yield* ConnectGate.make(1)
      yield* gate.take
      const entered: Array<string> = []
      const first = yield* Effect.fork(gate.withPermit(Effect.sync(() => entered.push("first"))))
      const second = yield* Effect.fork(gate.withPermit(Effect.sync(() => entered.push("second"))))
      yield* settle
      // The release hands the permit to `first`, which is interrupted at once: whether it got to run or not, the
      // permit reaches `second` and comes back.
      yield* Effect.zipRight(gate.release, Fiber.interruptFork(first))
      yield* Fiber.await(first)
      yield* Fiber.join(second)
      expect(entered.at(-1)).toBe("second")
      expect(yield* gate.state).toEqual({ free: 1, waiting: 0 })
    }))

  it.effect("never loses or makes a permit, whatever is interrupted when", () =>
    Effect.gen(function*() {
      const permits = 4
      const gate = yield* ConnectGate.make(permits)
      let inside = 0
      let most = 0
      const fibers = []
      for (let i = 0; i < 300; i++) {
        const work = Effect.suspend(() => {
          inside++
          most = Math.max(most, inside)
          return Effect.ensuring(Effect.yieldNow(), Effect.sync(() => inside--))
        })
        fibers.push(yield* Effect.fork(gate.withPermit(work)))
        if (yield* Random.nextBoolean) {
          const victim = fibers[yield* Random.nextIntBetween(0, fibers.length)]
          if (victim !== undefined) yield* Fiber.interruptFork(victim)
        }
        if (i % 7 === 0) yield* settle
      }
      yield* Effect.forEach(fibers, Fiber.await, { discard: true })
      expect(most).toBeLessThanOrEqual(permits)
      expect(yield* gate.state).toEqual({ free: permits, waiting: 0 })
    }))
})
