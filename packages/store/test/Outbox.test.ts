import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { makeMessageId, type MessageId } from "@wacluster/domain/Ids"
import { ShardNumber } from "@wacluster/domain/Shard"
import { Cause, Clock, Context, Duration, Effect, Exit, Fiber, Layer, Option, Scope } from "effect"
import { Messages } from "../src/Messages.js"
import { Outbox } from "../src/Outbox.js"
import * as OutboxLayer from "../src/Outbox.js"
import { ShardFences } from "../src/ShardFences.js"
import { seedSession, storeLayer } from "./support.js"

const fence = (shard: number, epoch: number) => ({ shard: ShardNumber.make(shard), epoch })
const to = "628111222333@s.whatsapp.net"

/** On the real clock: what the test waits for is the writer's linger, a real wait. */
const onLiveClock = Effect.withClock(Clock.make())

describe("Outbox", () => {
  it.layer(storeLayer("outbox"))((it) => {
    it.effect("hands texts out in the order they were accepted, also those accepted within one millisecond", () =>
      Effect.gen(function*() {
        const outbox = yield* Outbox
        const session = yield* seedSession({ shard: 9 })
        yield* (yield* ShardFences).advance(9, 1)
        const texts = Array.from({ length: 200 }, (_, i) => `text ${i}`)
        for (const text of texts) {
          yield* outbox.enqueue(fence(9, 1), { id: yield* makeMessageId, sessionId: session.id, remoteJid: to, text })
        }
        const waiting = yield* outbox.next(session.id, 500)
        assert.deepStrictEqual(waiting.map((m) => m.text), texts)
        // Usually many share a millisecond here, so the order above is not the timestamps' doing; a slow machine may
        // give each its own, which is no failure of the order (it failed CI once as an assertion).
      }))

    it.effect("queues texts and hands them out oldest first, then sent or failed ones no more", () =>
      Effect.gen(function*() {
        const outbox = yield* Outbox
        const session = yield* seedSession({ shard: 5 })
        yield* (yield* ShardFences).advance(5, 1)
        const ids: Array<MessageId> = []
        for (const text of ["one", "two", "three"]) {
          const queued = yield* outbox.enqueue(fence(5, 1), {
            id: yield* makeMessageId,
            sessionId: session.id,
            remoteJid: to,
            text
          })
          assert.strictEqual(queued.status, "queued")
          assert.isFalse(queued.repeated)
          ids.push(queued.messageId)
        }
        const waiting = yield* outbox.next(session.id, 10)
        assert.deepStrictEqual(waiting.map((m) => m.text), ["one", "two", "three"])
        assert.deepStrictEqual(waiting.map((m) => m.id), ids)
        assert.isNull(waiting[0]?.waMessageId)
        assert.strictEqual((yield* outbox.depth(session.id)).pending, 3)

        const [first, second] = ids
        if (first === undefined || second === undefined) return assert.fail("not queued")
        yield* outbox.assignWaMessageId(fence(5, 1), first, "3EB0FIRST")
        assert.strictEqual((yield* outbox.next(session.id, 1))[0]?.waMessageId, "3EB0FIRST")
        assert.isTrue(yield* outbox.markSent(fence(5, 1), first))
        assert.isFalse(yield* outbox.markSent(fence(5, 1), first))
        assert.isTrue(yield* outbox.markFailed(fence(5, 1), second, "not on WhatsApp"))
        assert.deepStrictEqual((yield* outbox.next(session.id, 10)).map((m) => m.text), ["three"])
        const depth = yield* outbox.depth(session.id)
        assert.strictEqual(depth.pending, 1)
        assert.instanceOf(depth.oldestAt, Date)
        // The sent one is history now, and a receipt moves it on.
        assert.isTrue(
          Option.isSome(yield* (yield* Messages).recordReceipt(fence(5, 1), session.id, "3EB0FIRST", "delivered"))
        )
      }))

    it.effect("returns the first message for a repeated idempotency key and queues nothing more", () =>
      Effect.gen(function*() {
        const outbox = yield* Outbox
        const session = yield* seedSession({ shard: 6 })
        yield* (yield* ShardFences).advance(6, 1)
        const text = { sessionId: session.id, remoteJid: to, text: "pay day", idempotencyKey: "order-17" }
        const first = yield* outbox.enqueue(fence(6, 1), { ...text, id: yield* makeMessageId })
        const again = yield* outbox.enqueue(fence(6, 1), { ...text, id: yield* makeMessageId })
        assert.isTrue(again.repeated)
        assert.strictEqual(again.messageId, first.messageId)
        assert.strictEqual(again.createdAt.getTime(), first.createdAt.getTime())
        assert.strictEqual((yield* outbox.depth(session.id)).pending, 1)
        // The same key on another session is another message.
        const other = yield* seedSession({ shard: 6 })
        const elsewhere = yield* outbox.enqueue(fence(6, 1), { ...text, sessionId: other.id, id: yield* makeMessageId })
        assert.isFalse(elsewhere.repeated)
      }))

    it.effect("expires texts queued too long ago, and only those", () =>
      Effect.gen(function*() {
        const outbox = yield* Outbox
        const session = yield* seedSession({ shard: 7 })
        yield* (yield* ShardFences).advance(7, 1)
        const old = yield* outbox.enqueue(fence(7, 1), {
          id: yield* makeMessageId,
          sessionId: session.id,
          remoteJid: to,
          text: "old"
        })
        // Real time passes between the two (the test clock would not move Postgres' now()).
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))
        const fresh = yield* outbox.enqueue(fence(7, 1), {
          id: yield* makeMessageId,
          sessionId: session.id,
          remoteJid: to,
          text: "new"
        })
        assert.isBelow(old.createdAt.getTime(), fresh.createdAt.getTime())
        assert.strictEqual(
          (yield* outbox.expire(fence(7, 1), session.id, fresh.createdAt, "queued too long")).length,
          1
        )
        assert.deepStrictEqual((yield* outbox.next(session.id, 10)).map((m) => m.text), ["new"])
      }))

    it.effect("refuses every write from a stale owner and keeps the queue as it was", () =>
      Effect.gen(function*() {
        const outbox = yield* Outbox
        const fences = yield* ShardFences
        const session = yield* seedSession({ shard: 8 })
        yield* fences.advance(8, 1)
        const queued = yield* outbox.enqueue(fence(8, 1), {
          id: yield* makeMessageId,
          sessionId: session.id,
          remoteJid: to,
          text: "hi"
        })
        yield* fences.advance(8, 2)
        const stale = fence(8, 1)
        const refused: Array<Exit.Exit<unknown, unknown>> = [
          yield* Effect.exit(
            outbox.enqueue(stale, { id: yield* makeMessageId, sessionId: session.id, remoteJid: to, text: "x" })
          ),
          yield* Effect.exit(outbox.assignWaMessageId(stale, queued.messageId, "3EB0STALE")),
          yield* Effect.exit(outbox.markSent(stale, queued.messageId)),
          yield* Effect.exit(outbox.markFailed(stale, queued.messageId, "no")),
          yield* Effect.exit(outbox.expire(stale, session.id, new Date(Date.now() + 60_000), "no"))
        ]
        for (const exit of refused) {
          assert.isTrue(Exit.isFailure(exit))
          if (Exit.isFailure(exit)) assert.include(String(exit.cause), "StaleEpoch")
        }
        const waiting = yield* outbox.next(session.id, 10)
        assert.deepStrictEqual(waiting.map((m) => [m.text, m.waMessageId]), [["hi", null]])
      }))

    it.effect("queues many sessions' texts at once in shared statements, each answered as if it came alone", () =>
      Effect.gen(function*() {
        const outbox = yield* Outbox
        const fences = yield* ShardFences
        const sql = yield* SqlClient.SqlClient
        yield* fences.advance(20, 1)
        yield* fences.advance(21, 2)
        const live = yield* Effect.forEach(Array.from({ length: 40 }), () => seedSession({ shard: 20 }))
        // Shard 21 moved on to epoch 2: texts still carrying epoch 1 come from a stale owner.
        const moved = yield* seedSession({ shard: 21 })
        const [firstSession] = live
        if (firstSession === undefined) return assert.fail("no sessions")
        const repeatedKey = { sessionId: firstSession.id, remoteJid: to, text: "once", idempotencyKey: "order-1" }
        const first = yield* outbox.enqueue(fence(20, 1), { ...repeatedKey, id: yield* makeMessageId })

        // Each session queues its texts one after another (as its actor does); the sessions all at once.
        const perSession = 10
        const outcomes = yield* Effect.all({
          live: Effect.forEach(
            live,
            (session, index) =>
              Effect.forEach(
                Array.from({ length: perSession }, (_, i) => i),
                (i) =>
                  Effect.flatMap(makeMessageId, (id) =>
                    outbox.enqueue(fence(20, 1), {
                      id,
                      sessionId: session.id,
                      remoteJid: to,
                      // A NUL cannot be stored: that text fails, the others in its statement are queued.
                      text: index === 3 && i === 5 ? "bad \u0000 text" : `text ${i}`
                    }).pipe(Effect.exit))
              ),
            { concurrency: "unbounded" }
          ),
          repeat: Effect.flatMap(makeMessageId, (id) => outbox.enqueue(fence(20, 1), { ...repeatedKey, id })),
          stale: Effect.flatMap(
            makeMessageId,
            (id) =>
              outbox.enqueue(fence(21, 1), { id, sessionId: moved.id, remoteJid: to, text: "late" }).pipe(Effect.exit)
          )
        }, { concurrency: "unbounded" })

        assert.isTrue(outcomes.repeat.repeated)
        assert.strictEqual(outcomes.repeat.messageId, first.messageId)
        assert.isTrue(Exit.isFailure(outcomes.stale))
        if (Exit.isFailure(outcomes.stale)) assert.include(String(Cause.squash(outcomes.stale.cause)), "stale")
        assert.strictEqual((yield* outbox.depth(moved.id)).pending, 0)
        outcomes.live.forEach((exits, index) =>
          exits.forEach((exit, i) => {
            if (index === 3 && i === 5) {
              assert.isTrue(Exit.isFailure(exit) && String(Cause.squash(exit.cause)).includes("StoreError"))
            } else {
              assert.isTrue(Exit.isSuccess(exit) && !exit.value.repeated, `text ${i} of session ${index}`)
            }
          })
        )
        for (const [index, session] of live.entries()) {
          const expected = Array.from({ length: perSession }, (_, i) => `text ${i}`)
            .filter((_, i) => !(index === 3 && i === 5))
          const waiting = (yield* outbox.next(session.id, 50)).map((m) => m.text)
          assert.deepStrictEqual(index === 0 ? waiting.slice(1) : waiting, expected)
        }
        // Rows written by one statement share its transaction id: far fewer statements than texts.
        const [statements] = yield* sql<{ count: string }>`SELECT count(DISTINCT xmin::text) AS count FROM messages
          WHERE session_id IN ${sql.in(live.map((session) => session.id))}`
        assert.isBelow(Number(statements?.count), (live.length * perSession) / 4)
      }))

    it.effect("a statement with few texts waits OUTBOX_LINGER for more: texts that come meanwhile share it", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* (yield* ShardFences).advance(40, 1)
        /** Five sessions each queue a text, 10 ms apart; how many statements wrote them. */
        const statementsFor = (linger: Duration.DurationInput) =>
          Effect.gen(function*() {
            const outbox = yield* Outbox
            const sessions = yield* Effect.forEach(Array.from({ length: 5 }), () => seedSession({ shard: 40 }))
            const started = performance.now()
            const latencies = yield* Effect.forEach(sessions, (session, i) =>
              Effect.gen(function*() {
                yield* Effect.sleep(Duration.millis(10 * i))
                const id = yield* makeMessageId
                yield* outbox.enqueue(fence(40, 1), { id, sessionId: session.id, remoteJid: to, text: `text ${i}` })
                return performance.now() - started - 10 * i
              }), { concurrency: "unbounded" })
            const [statements] = yield* sql<{ count: string }>`SELECT count(DISTINCT xmin::text) AS count
              FROM messages WHERE session_id IN ${sql.in(sessions.map((session) => session.id))}`
            return { statements: Number(statements?.count), latencies }
          }).pipe(Effect.provide(OutboxLayer.layerWith({ linger: Duration.decode(linger) })))
        const lingering = yield* statementsFor("200 millis")
        assert.strictEqual(lingering.statements, 1)
        // The first text waited the whole linger, the last the rest of it.
        assert.isAtLeast(lingering.latencies[0] ?? 0, 190)
        // With none, the first text is written alone at once; the others go as the writer is free again (texts that
        // come while a statement runs share the next one: on a busy machine a statement outlasts the 10 ms).
        const eager = yield* statementsFor(0)
        assert.isAtLeast(eager.statements, 2)
        for (const latency of eager.latencies) assert.isBelow(latency, 150)
      }).pipe(onLiveClock))

    it.effect("a text taken for a lingering statement is written though the store closes meanwhile; one after is refused", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* (yield* ShardFences).advance(41, 1)
        const session = yield* seedSession({ shard: 41 })
        const scope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(OutboxLayer.layerWith({ linger: Duration.millis(300) }), scope)
        const outbox = Context.get(context, Outbox)
        const queued = yield* Effect.fork(
          Effect.flatMap(
            makeMessageId,
            (id) => outbox.enqueue(fence(41, 1), { id, sessionId: session.id, remoteJid: to, text: "in flight" })
          )
        )
        yield* Effect.sleep("100 millis")
        yield* Scope.close(scope, Exit.void)
        // Answered, not left waiting: a text taken out of the queue and then dropped would never be.
        const exit = yield* Fiber.await(queued).pipe(Effect.timeout("5 seconds"))
        assert.isTrue(Exit.isSuccess(exit))
        const rows = yield* sql<{ text: string }>`SELECT body->>'text' AS text FROM messages
          WHERE session_id = ${session.id}`
        assert.deepStrictEqual(rows.map((row) => row.text), ["in flight"])
        // A text after the close is refused at once: not queued, and not left waiting for a writer that is gone.
        const late = yield* Effect.flatMap(
          makeMessageId,
          (id) => outbox.enqueue(fence(41, 1), { id, sessionId: session.id, remoteJid: to, text: "too late" })
        ).pipe(Effect.exit, Effect.timeout("5 seconds"))
        assert.isTrue(Exit.isFailure(late) && String(Cause.squash(late.cause)).includes("closing"))
      }).pipe(onLiveClock))

    it.effect("goes on queueing texts after Postgres drops its connections, losing none it accepted", () =>
      Effect.gen(function*() {
        const outbox = yield* Outbox
        const sql = yield* SqlClient.SqlClient
        const session = yield* seedSession({ shard: 30 })
        yield* (yield* ShardFences).advance(30, 1)
        const enqueue = (text: string) =>
          Effect.flatMap(
            makeMessageId,
            (id) => outbox.enqueue(fence(30, 1), { id, sessionId: session.id, remoteJid: to, text })
          )
        yield* enqueue("before")
        // Every other connection to the database: the batch writer's own and the pool's.
        yield* sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()`
        // A text that meets a connection in the moment it breaks fails, and says so (its caller is told to retry):
        // at most one does; every other is queued.
        const accepted = ["before"]
        let failures = 0
        for (let i = 0; i < 5; i++) {
          const queued = yield* Effect.exit(enqueue(`after ${i}`))
          if (Exit.isSuccess(queued)) accepted.push(`after ${i}`)
          else failures++
        }
        assert.isAtMost(failures, 1)
        assert.deepStrictEqual((yield* outbox.next(session.id, 10)).map((m) => m.text), accepted)
      }))
  })
})
