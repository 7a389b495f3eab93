/**
 * The credentials' revision: one number that Postgres itself raises in the transaction of every change that may
 * take a credential away (a key revoked or deleted, a session deleted, a tenant's token replaced or the tenant
 * deleted), whoever makes it. Gateways cache keys and tokens for minutes and read this number twice a second: when it
 * has moved, they forget every credential they cached. Being transactional, it moves exactly when the change becomes
 * visible, so a lookup made after a gateway saw it move sees the change.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export const migration0009 = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE credential_revision (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    revision bigint NOT NULL
  )`
  yield* sql`INSERT INTO credential_revision (revision) VALUES (0)`
  yield* sql`CREATE FUNCTION credential_revision_bump() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE credential_revision SET revision = revision + 1;
      RETURN NULL;
    END
  $$`
  // Statement-level: a session deleted with all its keys raises it once or twice, not once per key.
  yield* sql`CREATE TRIGGER api_keys_revoked AFTER UPDATE OF revoked_at, key_hash ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION credential_revision_bump()`
  yield* sql`CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION credential_revision_bump()`
  yield* sql`CREATE TRIGGER sessions_deleted AFTER DELETE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION credential_revision_bump()`
  yield* sql`CREATE TRIGGER tenants_changed AFTER UPDATE OF token_hash OR DELETE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION credential_revision_bump()`
})
