/**
 * The outbound queue is read oldest first per session (and counted for the health panel): an index over just the
 * queued outbound rows keeps that cheap however long the session's history grows.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const migration0004 = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql`CREATE INDEX messages_outbox_idx ON messages (session_id, created_at, id)
      WHERE direction = 'outbound' AND status = 'queued'`
)
