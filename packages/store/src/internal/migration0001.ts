/**
 * The initial schema. Ids are text with their prefix checked; timestamps have millisecond precision so a
 * JS Date round-trips exactly (keyset cursors compare them); counters and epochs are bigint.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const migration0001 = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  yield* sql`CREATE TABLE cluster_meta (
    key text PRIMARY KEY,
    value text NOT NULL
  )`

  yield* sql`CREATE TABLE tenants (
    id text PRIMARY KEY CHECK (id ~ '^ten_[0-9A-Za-z]{20}$'),
    name text NOT NULL,
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz(3) NOT NULL DEFAULT now()
  )`

  yield* sql`CREATE TABLE sessions (
    id text PRIMARY KEY CHECK (id ~ '^sess_[0-9A-Za-z]{20}$'),
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL,
    city text NOT NULL CHECK (city ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    shard integer NOT NULL CHECK (shard >= 0),
    desired_state text NOT NULL DEFAULT 'running' CHECK (desired_state IN ('running', 'stopped')),
    created_at timestamptz(3) NOT NULL DEFAULT now(),
    updated_at timestamptz(3) NOT NULL DEFAULT now()
  )`
  yield* sql`CREATE INDEX sessions_tenant_page_idx ON sessions (tenant_id, created_at, id)`
  yield* sql`CREATE INDEX sessions_running_shard_idx ON sessions (shard) WHERE desired_state = 'running'`

  // The shard is derived from the id, the proxy from the city and ownership from the tenant: none may move.
  yield* sql`CREATE FUNCTION sessions_keep_permanent_columns() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id THEN
      RAISE EXCEPTION 'session % cannot change its id', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.city IS DISTINCT FROM OLD.city THEN
      RAISE EXCEPTION 'session %: the city is permanent (it is %, the update asked for %)', OLD.id, OLD.city, NEW.city
        USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
      RAISE EXCEPTION 'session %: the tenant is permanent (it is %, the update asked for %)', OLD.id, OLD.tenant_id,
        NEW.tenant_id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.shard IS DISTINCT FROM OLD.shard THEN
      RAISE EXCEPTION 'session %: the shard is permanent (it is %, the update asked for %)', OLD.id, OLD.shard,
        NEW.shard USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
  END
  $$`
  yield* sql`CREATE TRIGGER sessions_keep_permanent_columns BEFORE UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION sessions_keep_permanent_columns()`

  yield* sql`CREATE TABLE session_runtime (
    session_id text PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    status text NOT NULL CHECK (status IN ('connecting', 'connected', 'disconnected', 'expired')),
    reason text NULL,
    connected_at timestamptz(3) NULL,
    phone_number text NULL,
    last_activity_at timestamptz(3) NULL,
    messages_sent bigint NOT NULL DEFAULT 0 CHECK (messages_sent >= 0),
    messages_received bigint NOT NULL DEFAULT 0 CHECK (messages_received >= 0),
    connected_ms bigint NOT NULL DEFAULT 0 CHECK (connected_ms >= 0),
    observed_ms bigint NOT NULL DEFAULT 0 CHECK (observed_ms >= 0),
    epoch bigint NOT NULL,
    updated_at timestamptz(3) NOT NULL DEFAULT now()
  )`

  yield* sql`CREATE TABLE api_keys (
    id text PRIMARY KEY CHECK (id ~ '^key_[0-9A-Za-z]{20}$'),
    session_id text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    name text NOT NULL,
    prefix text NOT NULL,
    key_hash bytea NOT NULL UNIQUE,
    rate_limit integer NULL CHECK (rate_limit > 0),
    created_at timestamptz(3) NOT NULL DEFAULT now(),
    last_used_at timestamptz(3) NULL,
    revoked_at timestamptz(3) NULL
  )`
  yield* sql`CREATE INDEX api_keys_session_idx ON api_keys (session_id, created_at, id)`

  yield* sql`CREATE TABLE shard_fences (
    shard integer PRIMARY KEY CHECK (shard >= 0),
    epoch bigint NOT NULL CHECK (epoch >= 0)
  )`

  yield* sql`CREATE TABLE auth_state (
    session_id text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    key text NOT NULL,
    value bytea NOT NULL,
    epoch bigint NOT NULL,
    updated_at timestamptz(3) NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, key)
  )`

  yield* sql`CREATE TABLE messages (
    id text PRIMARY KEY CHECK (id ~ '^msg_[0-9A-Za-z]{20}$'),
    session_id text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    direction text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    remote_jid text NOT NULL,
    body jsonb NOT NULL,
    status text NOT NULL,
    error text NULL,
    wa_message_id text NULL,
    idempotency_key text NULL,
    created_at timestamptz(3) NOT NULL DEFAULT now(),
    updated_at timestamptz(3) NOT NULL DEFAULT now(),
    UNIQUE (session_id, idempotency_key)
  )`
  yield* sql`CREATE INDEX messages_session_page_idx ON messages (session_id, created_at, id)`
})
