import { SqlClient } from "@effect/sql"
import { assert, layer } from "@effect/vitest"
import { ShardNumber } from "@wacluster/domain/Shard"
import { Deferred, Effect, Fiber, Option, Schedule } from "effect"
import { StaleEpoch } from "../src/Errors.js"
import type { Fence } from "../src/Fence.js"
import * as SessionRuntime from "../src/SessionRuntime.js"
import * as ShardFences from "../src/ShardFences.js"
import { seedSession, storeLayer } from "./support.js"

const state = (sessionId: SessionRuntime.RuntimeState["sessionId"], messagesSent = 0): SessionRuntime.RuntimeState => ({
  sessionId,
  status: "connected",
  reason: null,
  connectedAt: new Date("2024-05-01T10:00:00.250Z"),
  phoneNumber: "+628123456789",
  lastActivityAt: null,
  messagesSent,
  messagesReceived: 2,
  connectedMs: 1_000,
  observedMs: 5_000,
  proxySticky: "Ab12Cd34Ef56"
})

const fence = (shard: number, epoch: number): Fence => ({ shard: ShardNumber.make(shard), epoch })

/** Waits until some other connection of this database is blocked on a lock. */
const someoneWaitsForALock = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ waiting: number }>`
    SELECT count(*)::int AS waiting FROM pg_stat_activity
    WHERE datname = current_database() AND wait_event_type = 'Lock'`
  if (rows[0]?.waiting === 0) return yield* Effect.fail("nobody waits yet")
}).pipe(Effect.retry(Schedule.spaced("10 millis").pipe(Schedule.upTo("10 seconds"))))

layer(storeLayer("fencing"), { timeout: 60_000, excludeTestServices: true })("Fencing", (it) => {
  it.effect("advance only moves forward and says whether the epoch is current", () =>
    Effect.gen(function*() {
      const fences = yield* ShardFences.ShardFences
      assert.isTrue(Option.isNone(yield* fences.current(1)))
      assert.isTrue(yield* fences.advance(1, 10))
      assert.isTrue(yield* fences.advance(1, 10))
      assert.isTrue(yield* fences.advance(1, 12))
      assert.isFalse(yield* fences.advance(1, 11))
      assert.deepStrictEqual(yield* fences.current(1), Option.some(12))
    }))

  it.effect("a write with the current epoch lands; an older epoch is rejected with StaleEpoch", () =>
    Effect.gen(function*() {
      const fences = yield* ShardFences.ShardFences
      const runtime = yield* SessionRuntime.SessionRuntime
      const session = yield* seedSession({ shard: 2 })
      yield* fences.advance(2, 5)

      yield* runtime.save(fence(2, 5), state(session.id, 1))
      const saved = Option.getOrThrow(yield* runtime.load(session.id))
      assert.strictEqual(saved.messagesSent, 1)
      assert.strictEqual(saved.epoch, 5)
      assert.strictEqual(saved.status, "connected")
      assert.deepStrictEqual(saved.connectedAt, new Date("2024-05-01T10:00:00.250Z"))

      yield* fences.advance(2, 6)
      const error = yield* Effect.flip(runtime.save(fence(2, 5), state(session.id, 2)))
      assert.instanceOf(error, StaleEpoch)
      assert.deepInclude(error, { shard: 2, epoch: 5, current: 6 })
      assert.strictEqual(Option.getOrThrow(yield* runtime.load(session.id)).messagesSent, 1)

      yield* runtime.save(fence(2, 6), state(session.id, 3))
      assert.strictEqual(Option.getOrThrow(yield* runtime.load(session.id)).epoch, 6)
      // A newer epoch than the fence is fine too (the fence is a lower bound).
      yield* runtime.save(fence(2, 7), state(session.id, 4))
      assert.strictEqual(Option.getOrThrow(yield* runtime.load(session.id)).messagesSent, 4)
    }))

  it.effect("loadMany returns the saved state of several sessions and skips those never saved", () =>
    Effect.gen(function*() {
      const fences = yield* ShardFences.ShardFences
      const runtime = yield* SessionRuntime.SessionRuntime
      const first = yield* seedSession({ shard: 4 })
      const second = yield* seedSession({ shard: 4 })
      const never = yield* seedSession({ shard: 4 })
      yield* fences.advance(4, 1)
      yield* runtime.save(fence(4, 1), state(first.id, 7))
      yield* runtime.save(fence(4, 1), state(second.id, 9))
      const loaded = yield* runtime.loadMany([first.id, second.id, never.id])
      assert.strictEqual(loaded.size, 2)
      assert.strictEqual(loaded.get(first.id)?.messagesSent, 7)
      assert.strictEqual(loaded.get(second.id)?.messagesSent, 9)
      assert.isFalse(loaded.has(never.id))
      assert.strictEqual((yield* runtime.loadMany([])).size, 0)
    }))

  it.effect("a shard that was never fenced accepts no writes", () =>
    Effect.gen(function*() {
      const runtime = yield* SessionRuntime.SessionRuntime
      const session = yield* seedSession({ shard: 3 })
      const error = yield* Effect.flip(runtime.save(fence(3, 1), state(session.id)))
      assert.instanceOf(error, StaleEpoch)
      assert.isNull(error.current)
      assert.isTrue(Option.isNone(yield* runtime.load(session.id)))
    }))

  it.effect("an advance waits for a fenced write in flight, which lands before it", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const fences = yield* ShardFences.ShardFences
      const runtime = yield* SessionRuntime.SessionRuntime
      const session = yield* seedSession({ shard: 4 })
      yield* fences.advance(4, 1)

      const written = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const writer = yield* sql.withTransaction(
        runtime.save(fence(4, 1), state(session.id, 1)).pipe(
          Effect.zipRight(Deferred.succeed(written, undefined)),
          Effect.zipRight(Deferred.await(release))
        )
      ).pipe(Effect.fork)
      yield* Deferred.await(written)

      const advancing = yield* Effect.fork(fences.advance(4, 2))
      yield* someoneWaitsForALock
      assert.isTrue(Option.isNone(yield* Fiber.poll(advancing)))

      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(writer)
      assert.isTrue(yield* Fiber.join(advancing))
      assert.strictEqual(Option.getOrThrow(yield* runtime.load(session.id)).epoch, 1)
      assert.instanceOf(yield* Effect.flip(runtime.save(fence(4, 1), state(session.id, 2))), StaleEpoch)
    }))

  it.effect("a fenced write that waits for an advance in flight sees the new epoch and is rejected", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const fences = yield* ShardFences.ShardFences
      const runtime = yield* SessionRuntime.SessionRuntime
      const session = yield* seedSession({ shard: 5 })
      yield* fences.advance(5, 1)

      const advanced = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const advancer = yield* sql.withTransaction(
        fences.advance(5, 2).pipe(
          Effect.zipRight(Deferred.succeed(advanced, undefined)),
          Effect.zipRight(Deferred.await(release))
        )
      ).pipe(Effect.fork)
      yield* Deferred.await(advanced)

      const writing = yield* Effect.fork(Effect.either(runtime.save(fence(5, 1), state(session.id, 1))))
      yield* someoneWaitsForALock
      assert.isTrue(Option.isNone(yield* Fiber.poll(writing)))

      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(advancer)
      const result = yield* Fiber.join(writing)
      assert.isTrue(result._tag === "Left" && result.left._tag === "StaleEpoch")
      assert.isTrue(Option.isNone(yield* runtime.load(session.id)))
    }))

  it.effect("once advance returns, no write of the old epoch lands, however many are racing", () =>
    Effect.gen(function*() {
      const fences = yield* ShardFences.ShardFences
      const runtime = yield* SessionRuntime.SessionRuntime
      const session = yield* seedSession({ shard: 6 })
      yield* fences.advance(6, 1)

      // Writers keep saving increasing counters with epoch 1 until they are fenced off.
      let counter = 0
      const writer = Effect.suspend(() => runtime.save(fence(6, 1), state(session.id, ++counter))).pipe(
        Effect.forever,
        Effect.catchTag("StaleEpoch", () => Effect.void)
      )
      const writers = yield* Effect.fork(Effect.all([writer, writer, writer, writer], { concurrency: "unbounded" }))
      yield* Effect.sleep("100 millis")
      assert.isTrue(yield* fences.advance(6, 2))
      const atAdvance = Option.getOrThrow(yield* runtime.load(session.id)).messagesSent
      yield* Fiber.join(writers)
      const atEnd = Option.getOrThrow(yield* runtime.load(session.id))
      assert.isAbove(atAdvance, 0)
      assert.strictEqual(atEnd.messagesSent, atAdvance)
      assert.strictEqual(atEnd.epoch, 1)
    }))
})
