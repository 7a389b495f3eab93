/**
 * Events waiting to be published: written in the same transaction as the change they tell of, published to
 * JetStream (WA_EVENTS) by the node that holds the shard, in `seq` order, then deleted. No foreign key: a
 * session's last event (it was deleted) outlives the session.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const migration0006 = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE CHECK (id ~ '^evt_[0-9A-Za-z]{20}$'),
    shard integer NOT NULL CHECK (shard >= 0),
    tenant_id text NOT NULL,
    session_id text NOT NULL,
    type text NOT NULL,
    data jsonb NOT NULL,
    created_at timestamptz(3) NOT NULL DEFAULT now()
  )`
  yield* sql`CREATE INDEX events_shard_idx ON events (shard, seq)`
})
