import { assert, layer } from "@effect/vitest"
import { makeDeliveryId, makeEventId, makeWebhookId, type WebhookId } from "@wacluster/domain/Ids"
import { ShardNumber } from "@wacluster/domain/Shard"
import { Effect, Layer, Option } from "effect"
import { randomBytes } from "node:crypto"
import { StaleEpoch } from "../src/Errors.js"
import type { Fence } from "../src/Fence.js"
import * as ShardFences from "../src/ShardFences.js"
import { type Attempt, type AttemptOutcome, type QueueItem, WebhookQueue } from "../src/WebhookQueue.js"
import * as WebhookQueueLive from "../src/WebhookQueue.js"
import * as Webhooks from "../src/Webhooks.js"
import { seedSession, storeLayer } from "./support.js"

const fence = (shard: number, epoch: number): Fence => ({ shard: ShardNumber.make(shard), epoch })

/** An endpoint of a new session on `shard`. */
const endpoint = (shard: number) =>
  Effect.gen(function*() {
    const session = yield* seedSession({ shard })
    const webhook = yield* (yield* Webhooks.Webhooks).create({
      id: yield* makeWebhookId,
      sessionId: session.id,
      url: "https://hooks.example.com/in",
      eventTypes: [],
      enabled: true,
      secret: randomBytes(32)
    }, 20)
    return Option.getOrThrow(webhook).id
  })

/** Queues events at these stream positions for the endpoint. */
const queueEvents = (webhookId: WebhookId, shard: number, positions: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const events = []
    for (const streamSeq of positions) {
      const eventId = yield* makeEventId
      events.push({
        webhookId,
        shard,
        eventId,
        eventType: "session.status",
        streamSeq,
        payload: JSON.stringify({ id: eventId, streamSeq })
      })
    }
    return yield* (yield* WebhookQueue).enqueue(events)
  })

const attempt = (item: QueueItem, outcome: AttemptOutcome): Effect.Effect<Attempt> =>
  Effect.map(makeDeliveryId, (deliveryId) => ({
    deliveryId,
    item,
    succeeded: outcome._tag === "delivered",
    statusCode: outcome._tag === "delivered" ? 200 : 503,
    latencyMs: 12.4,
    error: outcome._tag === "delivered" ? null : "HTTP 503",
    outcome
  }))

const TestLayer = Layer.mergeAll(WebhookQueueLive.layer, Webhooks.layer).pipe(
  Layer.provideMerge(storeLayer("webhook_queue"))
)

layer(TestLayer, { timeout: 60_000, excludeTestServices: true })("WebhookQueue", (it) => {
  it.effect("queues an event once per endpoint and hands items out in stream order up to the floor", () =>
    Effect.gen(function*() {
      const queue = yield* WebhookQueue
      const webhookId = yield* endpoint(3)
      assert.strictEqual(yield* queueEvents(webhookId, 3, [30, 10, 20]), 3)
      const due = yield* queue.due(webhookId, 20, 50)
      assert.deepStrictEqual(due.map((item) => item.streamSeq), [10, 20])
      // The same event handed out again by the stream is not queued twice.
      const again = yield* queue.enqueue(due.map((item) => ({ ...item, shard: 3 })))
      assert.strictEqual(again, 0)
      assert.deepStrictEqual((yield* queue.due(webhookId, 100, 50)).map((item) => item.streamSeq), [10, 20, 30])
    }))

  it.effect("records a batch in one go: delivered items leave the queue, retries wait, a stale shard's are refused", () =>
    Effect.gen(function*() {
      const queue = yield* WebhookQueue
      const fences = yield* ShardFences.ShardFences
      const [current, stale] = [yield* endpoint(5), yield* endpoint(6)]
      yield* fences.advance(5, 7)
      yield* fences.advance(6, 9)
      yield* queueEvents(current, 5, [1, 2])
      yield* queueEvents(stale, 6, [3])
      const [first, second] = yield* queue.due(current, 10, 50)
      const [old] = yield* queue.due(stale, 10, 50)
      assert.isDefined(first)
      assert.isDefined(second)
      assert.isDefined(old)
      if (first === undefined || second === undefined || old === undefined) return
      const retryAt = new Date(Date.now() + 60_000)

      const results = yield* queue.recordAll([
        { fence: fence(5, 7), attempt: yield* attempt(first, { _tag: "delivered" }) },
        { fence: fence(5, 7), attempt: yield* attempt(second, { _tag: "retry", at: retryAt }) },
        // Shard 6 has moved on to epoch 9: this node's epoch 8 may write nothing for it.
        { fence: fence(6, 8), attempt: yield* attempt(old, { _tag: "delivered" }) }
      ])
      assert.deepStrictEqual(results.slice(0, 2), [null, null])
      assert.instanceOf(results[2], StaleEpoch)
      assert.strictEqual(results[2]?.current, 9)

      // The delivered one is done, the retried one waits with its attempt counted, the refused one is untouched.
      const left = yield* queue.due(current, 10, 50)
      assert.deepStrictEqual(left.map((item) => [item.streamSeq, item.attempts]), [[2, 1]])
      assert.strictEqual(left[0]?.nextAttemptAt.getTime(), Math.floor(retryAt.getTime()))
      const untouched = yield* queue.due(stale, 10, 50)
      assert.deepStrictEqual(untouched.map((item) => item.attempts), [0])
      // Each written attempt is in its endpoint's log; nothing of the refused one.
      const log = yield* queue.deliveries(current, { limit: 10 })
      assert.deepStrictEqual(log.map((entry) => [entry.succeeded, entry.statusCode]).sort(), [[false, 503], [
        true,
        200
      ]])
      assert.deepStrictEqual(yield* queue.deliveries(stale, { limit: 10 }), [])
    }))

  it.effect("a shard with no fence at all is refused too", () =>
    Effect.gen(function*() {
      const queue = yield* WebhookQueue
      const webhookId = yield* endpoint(11)
      yield* queueEvents(webhookId, 11, [1])
      const [item] = yield* queue.due(webhookId, 10, 50)
      if (item === undefined) return assert.fail("nothing queued")
      const [result] = yield* queue.recordAll([
        { fence: fence(11, 1), attempt: yield* attempt(item, { _tag: "delivered" }) }
      ])
      assert.instanceOf(result, StaleEpoch)
      assert.strictEqual(result?.current, null)
    }))
})
