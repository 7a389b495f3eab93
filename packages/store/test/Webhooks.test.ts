import { SqlClient } from "@effect/sql"
import { assert, layer } from "@effect/vitest"
import { makeWebhookId } from "@wacluster/domain/Ids"
import { Effect, Layer, Option } from "effect"
import { randomBytes } from "node:crypto"
import * as Webhooks from "../src/Webhooks.js"
import { seedSession, storeLayer } from "./support.js"

const TestLayer = Webhooks.layer.pipe(Layer.provideMerge(storeLayer("webhooks")))

layer(TestLayer, { timeout: 60_000, excludeTestServices: true })("Webhooks", (it) => {
  it.effect("creations racing for a session's last places never go past its limit; other sessions are not held up", () =>
    Effect.gen(function*() {
      const webhooks = yield* Webhooks.Webhooks
      const session = yield* seedSession()
      const other = yield* seedSession()
      const create = (sessionId: typeof session.id) =>
        Effect.flatMap(makeWebhookId, (id) =>
          webhooks.create({
            id,
            sessionId,
            url: "https://hooks.example.com/in",
            eventTypes: [],
            enabled: true,
            secret: randomBytes(32)
          }, 5))
      // Two already there; twelve at once for the three places left, beside the other session's. Every connection of
      // the pool is opened first, so the creations really run side by side.
      yield* Effect.replicateEffect(create(session.id), 2)
      const sql = yield* SqlClient.SqlClient
      yield* Effect.all(Array.from({ length: 10 }, () => sql`SELECT pg_sleep(0.05)`), { concurrency: "unbounded" })
      const [mine, theirs] = yield* Effect.all([
        Effect.all(Array.from({ length: 12 }, () => create(session.id)), { concurrency: "unbounded" }),
        Effect.all(Array.from({ length: 4 }, () => create(other.id)), { concurrency: "unbounded" })
      ], { concurrency: "unbounded" })
      assert.strictEqual(mine.filter(Option.isSome).length, 3)
      assert.strictEqual(theirs.filter(Option.isSome).length, 4)
      assert.strictEqual((yield* webhooks.list(session.id)).length, 5)
      assert.strictEqual((yield* webhooks.list(other.id)).length, 4)
      // Full stays full; deleting one frees one place.
      assert.isTrue(Option.isNone(yield* create(session.id)))
      const [first] = yield* webhooks.list(session.id)
      if (first === undefined) return assert.fail("no webhook")
      assert.isTrue(yield* webhooks.delete(session.id, first.id))
      assert.isTrue(Option.isSome(yield* create(session.id)))
      assert.isTrue(Option.isNone(yield* create(session.id)))
    }))
})
