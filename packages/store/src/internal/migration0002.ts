/**
 * The sticky part of a session's proxy username, so a session keeps its residential exit (its IP in its city)
 * across reconnects, node restarts and failover, and only changes it when the proxy fails.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const migration0002 = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql`ALTER TABLE session_runtime ADD COLUMN proxy_sticky text`
)
