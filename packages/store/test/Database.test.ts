import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Layer, Scope } from "effect"
import * as Database from "../src/Database.js"
import { mapStoreError } from "../src/Errors.js"
import { freshDatabase } from "./support.js"

// One connection, held by a slow statement: the next query has to wait for it.
const oneConnection = (url: string) => Database.layerFromUrl(url, { maxConnections: 1, connectTimeout: "1 second" })
const holdTheConnection = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT pg_sleep(4)`)
const query = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1 AS one`)

describe("Database pool", () => {
  it.scopedLive(
    "a query that cannot get a connection fails after DATABASE_CONNECT_TIMEOUT instead of waiting on",
    () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase("connect_timeout")
        const context = yield* Layer.build(oneConnection(url))
        yield* Effect.forkScoped(Effect.provide(holdTheConnection, context))
        yield* Effect.sleep("300 millis")
        const started = performance.now()
        const waited = yield* Effect.exit(Effect.provide(query, context))
        const elapsed = performance.now() - started
        expect(Exit.isFailure(waited)).toBe(true)
        expect(elapsed).toBeGreaterThanOrEqual(900)
        expect(elapsed).toBeLessThan(3500)
      }),
    { timeout: 20_000 }
  )

  it.scopedLive(
    "a store operation waiting for a connection when the pool closes is answered, so a stop cannot hang",
    () =>
      Effect.gen(function*() {
        const url = yield* freshDatabase("pool_close")
        const poolScope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(oneConnection(url), poolScope)
        yield* Effect.forkIn(Effect.provide(holdTheConnection, context), poolScope)
        yield* Effect.sleep("300 millis")
        // Uninterruptible, as every store operation is: only an answer from the pool ends it.
        const waiter = yield* Effect.fork(Effect.exit(Effect.provide(query.pipe(mapStoreError("test")), context)))
        yield* Effect.sleep("100 millis")
        yield* Scope.close(poolScope, Exit.void)
        const answered = yield* Fiber.await(waiter).pipe(Effect.timeout(Duration.seconds(5)))
        expect(Exit.isSuccess(answered) && Exit.isFailure(answered.value)).toBe(true)
      }),
    { timeout: 20_000 }
  )
})
