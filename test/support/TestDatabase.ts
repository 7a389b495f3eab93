/**
 * A database of its own for one test (or one `it.layer`): created on the run's private Postgres, dropped with
 * FORCE when the scope closes, so tests never see each other's rows and a leaked pool cannot block cleanup.
 */
import * as Postgres from "@wacluster/infra/Postgres"
import { Effect, type Scope } from "effect"
import { randomBytes } from "node:crypto"
import { inject } from "vitest"
import "./ProvidedContext.js"

/** The run's superuser URL (database `postgres`). */
export const databaseAdminUrl: Effect.Effect<string> = Effect.sync(() => inject("databaseAdminUrl"))

/** The URL of a fresh, empty database that lives as long as the current scope. */
export const freshDatabase: Effect.Effect<string, never, Scope.Scope> = Effect.gen(function*() {
  const adminUrl = yield* databaseAdminUrl
  const name = `test_${process.pid}_${randomBytes(6).toString("hex")}`
  return yield* Effect.acquireRelease(
    Postgres.createDatabase(adminUrl, name),
    () =>
      Postgres.dropDatabase(adminUrl, name).pipe(
        Effect.catchAll((error) => Effect.logWarning(`could not drop test database ${name}: ${error.message}`))
      )
  )
}).pipe(Effect.orDie, Effect.withSpan("TestDatabase.freshDatabase"))
