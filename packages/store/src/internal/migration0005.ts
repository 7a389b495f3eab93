/**
 * Rate limits per session and per API key: requests per minute and texts queued per hour, null for the cluster's
 * defaults. `api_keys.rate_limit` (never used) stays for processes of the previous version during a rolling upgrade.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const migration0005 = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  for (const table of ["sessions", "api_keys"]) {
    yield* sql`ALTER TABLE ${sql(table)}
      ADD COLUMN requests_per_minute integer NULL CHECK (requests_per_minute > 0),
      ADD COLUMN messages_per_hour integer NULL CHECK (messages_per_hour > 0)`
  }
})
