import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Option } from "effect"
import * as Database from "../src/Database.js"
import * as PreparedConnection from "../src/PreparedConnection.js"
import { freshDatabase } from "./support.js"

const backend: PreparedConnection.NamedStatement = { name: "test_backend", text: "SELECT pg_backend_pid() AS pid" }
const prepared: PreparedConnection.NamedStatement = {
  name: "test_prepared",
  text: "SELECT name FROM pg_prepared_statements ORDER BY name"
}
const divide: PreparedConnection.NamedStatement = { name: "test_divide", text: "SELECT 1 / $1::integer AS quotient" }

const pidOf = (connection: PreparedConnection.PreparedConnection) =>
  Effect.map(connection.run(backend, []), (rows) => Number(rows[0]?.pid))

/** A prepared connection and the pool beside it, on a fresh database. */
const setUp = (label: string) =>
  Effect.gen(function*() {
    const url = yield* freshDatabase(label)
    const context = yield* Layer.build(Database.layerFromUrl(url))
    const connection = yield* Effect.provide(PreparedConnection.make, context)
    const sql = yield* Effect.provide(SqlClient.SqlClient, context)
    // The server's own database, for what cannot be done from inside the test's.
    const adminUrl = new URL(url)
    adminUrl.pathname = "/postgres"
    const admin = yield* Effect.provide(
      SqlClient.SqlClient,
      yield* Layer.build(Database.layerFromUrl(adminUrl.toString(), { maxConnections: 1 }))
    )
    return { admin, connection, database: new URL(url).pathname.slice(1), sql }
  })

describe("PreparedConnection", () => {
  it.scopedLive("runs each statement on one connection, prepared there once however often it runs", () =>
    Effect.gen(function*() {
      const { connection } = yield* setUp("prepared_once")
      const pids = new Set<number>()
      for (let i = 0; i < 5; i++) pids.add(yield* pidOf(connection))
      for (let i = 0; i < 3; i++) expect((yield* connection.run(divide, [i + 1]))[0]?.quotient).toBe(i === 0 ? 1 : 0)
      expect(pids.size).toBe(1)
      const names = (yield* connection.run(prepared, [])).map((row) => row.name)
      expect(names).toEqual(["test_backend", "test_divide", "test_prepared"])
    }))

  it.scopedLive("a statement Postgres refuses fails alone and leaves the connection as it was", () =>
    Effect.gen(function*() {
      const { connection } = yield* setUp("refused")
      const before = yield* pidOf(connection)
      const refused = yield* Effect.exit(connection.run(divide, [0]))
      const error = Exit.isFailure(refused) ? Cause.failureOption(refused.cause) : Option.none()
      expect(Option.map(error, (e) => String(e.cause))).toEqual(Option.some("error: division by zero"))
      expect(yield* pidOf(connection)).toBe(before)
      expect((yield* connection.run(divide, [1]))[0]?.quotient).toBe(1)
    }))

  it.scopedLive("opens a new connection once Postgres has dropped its own, and prepares its statements there", () =>
    Effect.gen(function*() {
      const { connection, sql } = yield* setUp("dropped")
      const before = yield* pidOf(connection)
      yield* sql`SELECT pg_terminate_backend(${before})`
      // The drop reaches the client as an event, soon after; a run that comes first fails (its caller answers with
      // the error), and the runs after it have a new connection.
      let failures = 0
      let after = before
      for (let attempt = 0; attempt < 20 && after === before; attempt++) {
        const pid = yield* Effect.exit(pidOf(connection))
        if (Exit.isSuccess(pid)) after = pid.value
        else failures++
        yield* Effect.sleep("50 millis")
      }
      expect(after).not.toBe(before)
      expect(failures).toBeLessThanOrEqual(1)
      expect((yield* connection.run(divide, [1]))[0]?.quotient).toBe(1)
      expect((yield* connection.run(prepared, [])).map((row) => row.name)).toEqual([
        "test_backend",
        "test_divide",
        "test_prepared"
      ])
    }))

  it.scopedLive("fails a run while Postgres cannot be reached, and runs again once it can", () =>
    Effect.gen(function*() {
      const { admin, connection, database } = yield* setUp("unreachable")
      const before = yield* pidOf(connection)
      // Every new connection to the database is refused for now; the one open is dropped.
      yield* admin`ALTER DATABASE ${admin(database)} ALLOW_CONNECTIONS false`
      yield* admin`SELECT pg_terminate_backend(${before})`
      yield* Effect.sleep("200 millis")
      const refused = yield* Effect.exit(pidOf(connection))
      expect(Exit.isFailure(refused)).toBe(true)
      yield* admin`ALTER DATABASE ${admin(database)} ALLOW_CONNECTIONS true`
      expect(yield* pidOf(connection)).not.toBe(before)
    }))
})
