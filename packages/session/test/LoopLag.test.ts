import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as LoopLag from "../src/LoopLag.js"

/** Keeps the event loop busy, as a node short of CPU would. */
const block = (ms: number) =>
  Effect.sync(() => {
    const until = performance.now() + ms
    while (performance.now() < until) {
      // busy
    }
  })
const tick = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 120)))

describe("LoopLag", () => {
  it.live("gives headroom at once while the loop keeps up", () =>
    Effect.scoped(Effect.gen(function*() {
      const lag = yield* LoopLag.make({ limitMs: 200, maxWait: "10 seconds" })
      yield* tick
      expect(yield* lag.current).toBeLessThan(200)
      const started = performance.now()
      yield* lag.headroom
      expect(performance.now() - started).toBeLessThan(50)
    })))

  it.live("after a stall, waits until the loop has caught up", () =>
    Effect.scoped(Effect.gen(function*() {
      const lag = yield* LoopLag.make({ limitMs: 200, maxWait: "10 seconds" })
      yield* tick
      yield* block(800)
      // The overdue sample runs first thing after the stall.
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 5)))
      expect(yield* lag.current).toBeGreaterThan(500)
      yield* lag.headroom
      expect(yield* lag.current).toBeLessThanOrEqual(200)
    })))

  it.live("under lasting overload, lets a connect go after maxWait rather than never", () =>
    Effect.scoped(Effect.gen(function*() {
      const lag = yield* LoopLag.make({ limitMs: 100, maxWait: "400 millis" })
      let overloaded = true
      const load = Effect.gen(function*() {
        while (overloaded) {
          yield* block(300)
          yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        }
      })
      yield* Effect.forkScoped(load)
      yield* tick
      yield* tick
      const started = performance.now()
      yield* lag.headroom
      const waited = performance.now() - started
      expect(yield* lag.current).toBeGreaterThan(100)
      overloaded = false
      expect(waited).toBeGreaterThanOrEqual(400)
    })))
})
