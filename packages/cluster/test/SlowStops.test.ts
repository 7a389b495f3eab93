import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, ExecutionStrategy, Exit, Fiber, HashMap, Logger, Scope, TestClock } from "effect"
import * as SlowStops from "../src/SlowStops.js"

/** A logger that keeps each line as `LEVEL message: waitingFor`. */
const capturing = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ annotations, logLevel, message }) => {
    const waitingFor = HashMap.get(annotations, "waitingFor")
    lines.push(
      `${logLevel.label} ${String(message)}${waitingFor._tag === "Some" ? `: ${String(waitingFor.value)}` : ""}`
    )
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

describe("SlowStops", () => {
  it.scoped("names the stops still running after 2 s, counting those of one kind, until they end", () => {
    const { layer, lines } = capturing()
    return Effect.gen(function*() {
      const hang = yield* Deferred.make<void>()
      // Released whatever happens, so the finalizers below (uninterruptible) never outlive the test.
      yield* Effect.addFinalizer(() => Deferred.succeed(hang, undefined))
      const scope = yield* Scope.make(ExecutionStrategy.parallel)
      // Three shards' leases and the NATS connection stopping; the leases hang, the connection closes at once.
      for (let i = 0; i < 3; i++) {
        yield* Scope.addFinalizer(scope, Deferred.await(hang).pipe(SlowStops.track("a shard's lease release")))
      }
      yield* Scope.addFinalizer(scope, Effect.void.pipe(SlowStops.track("the NATS connection")))
      // A daemon: a failed assertion ends the test without waiting for this close (it waits for `hang`).
      const closing = yield* Effect.forkDaemon(Scope.close(scope, Exit.void))

      yield* TestClock.adjust("1 second")
      expect(lines).toEqual([])
      yield* TestClock.adjust("1 second")
      expect(lines).toEqual(["WARN slow to stop: a shard's lease release ×3 (2.0 s)"])
      yield* TestClock.adjust("2 seconds")
      expect(lines).toHaveLength(2)
      expect(lines[1]).toBe("WARN slow to stop: a shard's lease release ×3 (4.0 s)")

      yield* Deferred.succeed(hang, undefined)
      yield* Fiber.join(closing)
      yield* TestClock.adjust("10 seconds")
      expect(lines).toHaveLength(2)
    }).pipe(Effect.provide(SlowStops.SlowStops.layer()), Effect.provide(layer))
  })

  it.effect("without the layer, runs the finalizer as it is", () =>
    Effect.gen(function*() {
      expect(yield* Effect.succeed(42).pipe(SlowStops.track("anything"))).toBe(42)
    }))
})
