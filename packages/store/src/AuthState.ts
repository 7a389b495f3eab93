/**
 * A session's WhatsApp credentials and signal keys, encrypted at rest (see `AuthCipher`). Writes are fenced:
 * only the current owner of the session's shard may change them.
 */
import { SqlClient } from "@effect/sql"
import type { SessionId } from "@wacluster/domain/Ids"
import { Context, Effect, Layer, Schema } from "effect"
import { AuthCipher, type AuthDecryptError } from "./AuthCipher.js"
import { mapStoreError, type StaleEpoch, type StoreError } from "./Errors.js"
import * as Fence from "./Fence.js"
import { Bytes } from "./internal/Columns.js"

export interface AuthStateEntry {
  readonly key: string
  /** null deletes the key. */
  readonly value: Uint8Array | null
}

export class AuthState extends Context.Tag("@wacluster/store/AuthState")<AuthState, {
  /** The decrypted values of those keys that exist. */
  readonly get: (
    sessionId: SessionId,
    keys: ReadonlyArray<string>
  ) => Effect.Effect<ReadonlyMap<string, Uint8Array>, StoreError | AuthDecryptError>
  /**
   * Every key of the session, decrypted, in one query: the state a session needs at connect. Keys starting with
   * `except` (a key prefix) are left out.
   */
  readonly getAll: (
    sessionId: SessionId,
    options?: { readonly except?: string }
  ) => Effect.Effect<ReadonlyMap<string, Uint8Array>, StoreError | AuthDecryptError>
  /** Writes and deletes (value null) in one fenced statement; for a key given twice the last entry wins. */
  readonly set: (
    fence: Fence.Fence,
    sessionId: SessionId,
    entries: ReadonlyArray<AuthStateEntry>
  ) => Effect.Effect<void, StoreError | StaleEpoch>
  /** Wipes the session's auth state (logged out). Fenced when a fence is given. */
  readonly clear: (sessionId: SessionId, fence?: Fence.Fence) => Effect.Effect<void, StoreError | StaleEpoch>
}>() {}

const Rows = Schema.Array(Schema.Struct({ key: Schema.String, value: Bytes }))

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const cipher = yield* AuthCipher

  const decrypt = (sessionId: SessionId, rows: typeof Rows.Type) =>
    Effect.gen(function*() {
      const values = new Map<string, Uint8Array>()
      for (const row of rows) {
        values.set(row.key, yield* cipher.decrypt(sessionId, row.key, row.value))
      }
      return values as ReadonlyMap<string, Uint8Array>
    })

  const get = (sessionId: SessionId, keys: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      if (keys.length === 0) return new Map<string, Uint8Array>()
      const rows = yield* sql`SELECT key, value FROM auth_state
        WHERE session_id = ${sessionId} AND key = ANY(${keys}::text[])`.pipe(
        Effect.flatMap(Schema.decodeUnknown(Rows))
      )
      return yield* decrypt(sessionId, rows)
    }).pipe(
      mapStoreError("AuthState.get"),
      Effect.withSpan("AuthState.get", { attributes: { sessionId, keys: keys.length } })
    )

  const getAll = (sessionId: SessionId, options: { readonly except?: string } = {}) =>
    (options.except === undefined
      ? sql`SELECT key, value FROM auth_state WHERE session_id = ${sessionId}`
      : sql`SELECT key, value FROM auth_state
          WHERE session_id = ${sessionId} AND left(key, ${options.except.length}) <> ${options.except}`).pipe(
        Effect.flatMap(Schema.decodeUnknown(Rows)),
        Effect.flatMap((rows) => decrypt(sessionId, rows)),
        mapStoreError("AuthState.getAll"),
        Effect.withSpan("AuthState.getAll", { attributes: { sessionId } })
      )

  const set = (fence: Fence.Fence, sessionId: SessionId, entries: ReadonlyArray<AuthStateEntry>) =>
    Effect.gen(function*() {
      const latest = new Map<string, Uint8Array | null>()
      for (const { key, value } of entries) latest.set(key, value)
      if (latest.size === 0) return
      const deletes: Array<string> = []
      const upsertKeys: Array<string> = []
      const upsertValues: Array<Uint8Array> = []
      for (const [key, value] of latest) {
        if (value === null) {
          deletes.push(key)
        } else {
          upsertKeys.push(key)
          upsertValues.push(yield* cipher.encrypt(sessionId, key, value))
        }
      }
      // `gate` is materialised once, so the fence row is locked once and both writes see the same answer.
      yield* Fence.fenced(sql, fence, (guard) =>
        sql`WITH gate AS MATERIALIZED (SELECT 1 AS ok WHERE ${guard}),
          deleted AS (
            DELETE FROM auth_state
            WHERE session_id = ${sessionId} AND key = ANY(${deletes}::text[]) AND EXISTS (SELECT 1 FROM gate)
          ),
          upserted AS (
            INSERT INTO auth_state (session_id, key, value, epoch)
            SELECT ${sessionId}, u.key, u.value, ${fence.epoch}
            FROM unnest(${upsertKeys}::text[], ${upsertValues}::bytea[]) AS u (key, value)
            WHERE EXISTS (SELECT 1 FROM gate)
            ON CONFLICT (session_id, key) DO UPDATE
              SET value = excluded.value, epoch = excluded.epoch, updated_at = now()
          )
          SELECT ok FROM gate`)
    }).pipe(
      mapStoreError("AuthState.set"),
      Effect.withSpan("AuthState.set", { attributes: { sessionId, entries: entries.length } })
    )

  const clear = (sessionId: SessionId, fence?: Fence.Fence) =>
    (fence === undefined
      ? Effect.asVoid(sql`DELETE FROM auth_state WHERE session_id = ${sessionId}`)
      : Effect.asVoid(Fence.fenced(sql, fence, (guard) =>
        sql`WITH gate AS MATERIALIZED (SELECT 1 AS ok WHERE ${guard}),
          deleted AS (DELETE FROM auth_state WHERE session_id = ${sessionId} AND EXISTS (SELECT 1 FROM gate))
          SELECT ok FROM gate`))).pipe(
        mapStoreError("AuthState.clear"),
        Effect.withSpan("AuthState.clear", { attributes: { sessionId } })
      )

  return AuthState.of({ get, getAll, set, clear })
})

export const layer = Layer.effect(AuthState, make)
