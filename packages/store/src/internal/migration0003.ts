/**
 * WhatsApp's own message id is unique per session: a message WhatsApp delivers twice (after a reconnect, say) is
 * recorded once, and receipts find the message they are about.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const migration0003 = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql`CREATE UNIQUE INDEX messages_wa_message_idx ON messages (session_id, wa_message_id)
      WHERE wa_message_id IS NOT NULL`
)
