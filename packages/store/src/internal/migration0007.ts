/**
 * The outbound queue in the order its texts were accepted. `created_at` has millisecond precision, so two texts a
 * session accepted within one millisecond tied and were sent in the order of their random ids: `seq` (rising with
 * every insert) orders them as accepted. Existing rows are numbered in their current order.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const migration0007 = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE messages ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY`
  yield* sql`DROP INDEX messages_outbox_idx`
  yield* sql`CREATE INDEX messages_outbox_idx ON messages (session_id, seq)
    WHERE direction = 'outbound' AND status = 'queued'`
})
