import { describe, expect, it } from "@effect/vitest"
import { Effect, Scheduler } from "effect"
import * as FairScheduler from "../src/FairScheduler.js"

/** Burns about `ms` of CPU without yielding. */
const busy = (ms: number) => {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // spinning
  }
}

/**
 * Many fibers, each doing short CPU-bound steps and yielding between them, for about `totalMs` of work in all; the
 * answer is how late a timer set for 0 ms ran meanwhile.
 */
const timerDelayUnderLoad = (fibers: number, steps: number, stepMs: number) =>
  Effect.gen(function*() {
    const scheduledAt = performance.now()
    const timer = new Promise<number>((resolve) => setTimeout(() => resolve(performance.now() - scheduledAt), 0))
    const worker = Effect.gen(function*() {
      for (let step = 0; step < steps; step++) {
        busy(stepMs)
        yield* Effect.yieldNow()
      }
    })
    yield* Effect.all(Array.from({ length: fibers }, () => worker), { concurrency: "unbounded", discard: true })
    return yield* Effect.promise(() => timer)
  })

describe("FairScheduler", () => {
  it.live("lets a due timer run long before thousands of ready fiber steps are done (the default does not)", () =>
    Effect.gen(function*() {
      // 200 fibers x 20 steps x 0.1 ms: about 400 ms of work, never waiting on I/O. Effect's default scheduler keeps
      // it all in microtasks, so the timer waits for nearly all of it.
      const starved = yield* timerDelayUnderLoad(200, 20, 0.1).pipe(Effect.withScheduler(Scheduler.defaultScheduler))
      const fair = yield* timerDelayUnderLoad(200, 20, 0.1).pipe(Effect.withScheduler(FairScheduler.make(10)))
      expect(starved).toBeGreaterThan(200)
      expect(fair).toBeLessThan(starved / 3)
    }))

  it.live("runs every fiber to the end, in the order they became ready", () =>
    Effect.gen(function*() {
      const seen: Array<number> = []
      yield* Effect.all(
        Array.from({ length: 50 }, (_, i) => Effect.sync(() => seen.push(i)).pipe(Effect.zipRight(Effect.yieldNow()))),
        { concurrency: "unbounded", discard: true }
      ).pipe(Effect.withScheduler(FairScheduler.make(1)))
      expect(seen).toEqual(Array.from({ length: 50 }, (_, i) => i))
    }))
})
