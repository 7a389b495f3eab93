/**
 * Webhooks. `webhooks` holds a session's endpoints with their signing secrets (encrypted; the previous secret is
 * kept until the end of a rotation's grace period). `webhook_queue` holds what each endpoint is owed, in the order
 * of the events stream (`stream_seq`), until it is delivered or given up on; `webhook_deliveries` is the log of
 * every attempt. Both go with their endpoint, and the endpoint with its session.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const migration0008 = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE webhooks (
    id text PRIMARY KEY CHECK (id ~ '^wh_[0-9A-Za-z]{20}$'),
    session_id text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    url text NOT NULL,
    event_types text[] NOT NULL DEFAULT '{}',
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text,
    secret bytea NOT NULL,
    previous_secret bytea,
    previous_secret_until timestamptz(3),
    created_at timestamptz(3) NOT NULL DEFAULT now(),
    updated_at timestamptz(3) NOT NULL DEFAULT now()
  )`
  yield* sql`CREATE INDEX webhooks_session_idx ON webhooks (session_id, created_at, id)`

  yield* sql`CREATE TABLE webhook_queue (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id text NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    shard integer NOT NULL CHECK (shard >= 0),
    event_id text NOT NULL,
    event_type text NOT NULL,
    stream_seq bigint NOT NULL,
    payload text NOT NULL,
    manual boolean NOT NULL DEFAULT false,
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz(3) NOT NULL DEFAULT now(),
    created_at timestamptz(3) NOT NULL DEFAULT now(),
    finished_at timestamptz(3)
  )`
  // An event is queued once per endpoint however often the stream hands it out; a manual redelivery is extra.
  yield* sql`CREATE UNIQUE INDEX webhook_queue_event_idx ON webhook_queue (webhook_id, event_id) WHERE NOT manual`
  yield* sql`CREATE INDEX webhook_queue_pending_idx ON webhook_queue (webhook_id, stream_seq, seq)
    WHERE state = 'pending'`
  yield* sql`CREATE INDEX webhook_queue_shard_idx ON webhook_queue (shard, stream_seq) WHERE state = 'pending'`
  yield* sql`CREATE INDEX webhook_queue_finished_idx ON webhook_queue (shard, finished_at) WHERE state <> 'pending'`

  yield* sql`CREATE TABLE webhook_deliveries (
    id text PRIMARY KEY CHECK (id ~ '^dlv_[0-9A-Za-z]{20}$'),
    webhook_id text NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    shard integer NOT NULL CHECK (shard >= 0),
    queue_seq bigint NOT NULL,
    event_id text NOT NULL,
    event_type text NOT NULL,
    attempt integer NOT NULL CHECK (attempt >= 1),
    manual boolean NOT NULL,
    succeeded boolean NOT NULL,
    status_code integer,
    latency_ms integer NOT NULL,
    error text,
    attempted_at timestamptz(3) NOT NULL DEFAULT now()
  )`
  yield* sql`CREATE INDEX webhook_deliveries_page_idx ON webhook_deliveries (webhook_id, attempted_at DESC, id DESC)`
  yield* sql`CREATE INDEX webhook_deliveries_age_idx ON webhook_deliveries (shard, attempted_at)`
})
