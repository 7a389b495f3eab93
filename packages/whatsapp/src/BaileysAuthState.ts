/**
 * Baileys' auth state (credentials and signal keys) kept in Postgres through `AuthState`, served from memory.
 *
 * Rows: key `creds` holds the `AuthenticationCreds`; key `<type>/<id>` holds one signal key, for example
 * `pre-key/12`, `session/628123456789.0` or `app-state-sync-key/AAAAAB3x`. No signal key type contains a `/`,
 * so the first `/` separates type and id. Values are UTF-8 JSON written with Baileys' `BufferJSON.replacer`,
 * exactly as its own `useMultiFileAuthState` writes files; `AuthState` encrypts them.
 *
 * Reads: the state loads with one `getAll` when the session opens, except one-time pre-keys: a linked device
 * keeps hundreds of them (812 uploaded at linking) and reads one only when a contact starts a new Signal session,
 * so they are read from Postgres when asked for and are not kept in memory once written. Everything else Baileys
 * reads from memory.
 * Writes are write-behind: a change is applied to memory at once (later reads see it) and recorded as pending.
 * A fiber in the caller's scope writes everything pending in one fenced `AuthState.set` every `flushEvery`,
 * immediately when the device becomes linked (losing that write would force a new QR scan), and a last time
 * when the scope closes. Signal sessions and sender keys (the ratchets a message's encryption moves) are written
 * through instead: `keys.set` resolves once they are in Postgres. A flush rejected with `StaleEpoch` fails
 * `failure`: this node no longer owns the session and must close its socket. Other store failures are retried with the pending writes kept; they fail
 * `failure` only when the store stays unavailable for `retryFor`.
 */
import type { SessionId } from "@wacluster/domain/Ids"
import type { AuthDecryptError } from "@wacluster/store/AuthCipher"
import { AuthState, type AuthStateEntry } from "@wacluster/store/AuthState"
import { type StaleEpoch, StoreError } from "@wacluster/store/Errors"
import type { Fence } from "@wacluster/store/Fence"
import type {
  AuthenticationCreds,
  AuthenticationState,
  SignalDataSet,
  SignalDataTypeMap,
  SignalKeyStore
} from "@whiskeysockets/baileys"
import { BufferJSON, initAuthCreds, proto } from "@whiskeysockets/baileys"
import { Clock, Deferred, Duration, Effect, Either, Exit, Queue, Runtime, Schedule, type Scope } from "effect"

/** The open auth state of one session, for one socket's lifetime. */
export interface SessionAuth {
  /** For `makeWASocket({ auth })`. Baileys adds its own transaction layer on top of `keys`. */
  readonly state: AuthenticationState
  /** Call on Baileys' `creds.update` (after Baileys has applied the update to `state.creds`). */
  readonly saveCreds: () => void
  /** Stored credentials with a linked `me` existed at open: this session logs in without a QR. */
  readonly registered: boolean
  /** Writes every pending change in one fenced statement; on failure the changes stay pending. */
  readonly flush: Effect.Effect<void, StoreError | StaleEpoch>
  /**
   * Fails once the write-behind gives up: at once on `StaleEpoch` (from any flush), or with the `StoreError`
   * of a store that stayed unavailable for `retryFor`. Never succeeds; race the socket against it.
   */
  readonly failure: Effect.Effect<never, StoreError | StaleEpoch>
  /** Logged out: drops pending writes, stops writing, and wipes the stored state (fenced). */
  readonly forget: Effect.Effect<void, StoreError | StaleEpoch>
}

export interface OpenOptions {
  /** How often pending writes are flushed. Default 1 second. */
  readonly flushEvery?: Duration.DurationInput
  /** How long the write-behind retries an unavailable store before failing `failure`. Default 30 seconds. */
  readonly retryFor?: Duration.DurationInput
}

/** The row key of the credentials. */
export const CREDS_KEY = "creds"
/** Key types a message's encryption moves forward (1:1 and group sessions): written through, see `set`. */
const RATCHETS: ReadonlySet<keyof SignalDataTypeMap> = new Set(["session", "sender-key"])
/** Keys read from Postgres when asked for, not kept in memory: one-time pre-keys. */
const LAZY_PREFIX = "pre-key/"

/** The row key of one signal key. */
export const keyOf = (type: keyof SignalDataTypeMap, id: string): string => `${type}/${id}`

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const serialize = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value, BufferJSON.replacer))

// JSON that Baileys' own values produced; `BufferJSON.reviver` turns the encoded buffers back into Buffers.
const deserialize = (bytes: Uint8Array): unknown => JSON.parse(decoder.decode(bytes), BufferJSON.reviver)

const revive = <T extends keyof SignalDataTypeMap>(type: T, bytes: Uint8Array): SignalDataTypeMap[T] => {
  const value = deserialize(bytes)
  // The row key names the type; protobuf values need their class back (as useMultiFileAuthState does).
  return (type === "app-state-sync-key" && typeof value === "object" && value !== null
    ? proto.Message.AppStateSyncKeyData.fromObject(value)
    : value) as SignalDataTypeMap[T]
}

const isLinked = (creds: AuthenticationCreds): boolean => creds.me?.id !== undefined

const parseCreds = (sessionId: SessionId, bytes: Uint8Array) =>
  Effect.try({
    try: () => deserialize(bytes) as AuthenticationCreds,
    catch: (cause) => new StoreError({ message: `stored credentials of session ${sessionId} are not JSON`, cause })
  })

/** The first retries come quickly (a linking write should not wait a full interval), then every `flushEvery`. */
const retryDelay = (flushEvery: Duration.Duration, failures: number): Duration.Duration =>
  Duration.min(flushEvery, Duration.millis(100 * 2 ** Math.min(failures - 1, 10)))

export const open = Effect.fn("BaileysAuthState.open")(function*(
  sessionId: SessionId,
  fence: Fence,
  options: OpenOptions = {}
): Effect.fn.Return<SessionAuth, StoreError | AuthDecryptError, Scope.Scope | AuthState> {
  const store = yield* AuthState
  const flushEvery = Duration.decode(options.flushEvery ?? "1 second")
  const retryFor = Duration.toMillis(Duration.decode(options.retryFor ?? "30 seconds"))

  // Baileys calls the key store and saveCreds from plain JavaScript; these maps are only touched in synchronous
  // blocks, so no lock is needed between Baileys and a flush: a flush takes the whole pending map in one step.
  const cache = new Map(yield* store.getAll(sessionId, { except: LAZY_PREFIX }))
  const runtime = yield* Effect.runtime<never>()
  const storedCreds = cache.get(CREDS_KEY)
  const creds = storedCreds === undefined ? initAuthCreds() : yield* parseCreds(sessionId, storedCreds)
  const registered = storedCreds !== undefined && isLinked(creds)
  let pending = new Map<string, Uint8Array | null>()
  /** The batch a flush is writing right now (not yet in Postgres, no longer pending). */
  let inFlight: ReadonlyMap<string, Uint8Array | null> = new Map()
  let linked = registered
  let forgotten = false
  let stale = false

  const failed = yield* Deferred.make<never, StoreError | StaleEpoch>()
  const wake = yield* Queue.dropping<void>(1)
  /** Something changed since the writer last looked: an idle session's writer sleeps until then. */
  const changed = yield* Queue.dropping<void>(1)
  // One flush at a time: two batches written concurrently could commit in the wrong order.
  const writing = yield* Effect.makeSemaphore(1)

  const record = (key: string, value: Uint8Array | null) => {
    if (value === null) cache.delete(key)
    else cache.set(key, value)
    if (!forgotten) {
      pending.set(key, value)
      Queue.unsafeOffer(changed, undefined)
    }
  }

  // A failed batch goes back under the changes made while it was in flight, which are newer.
  const restore = (batch: ReadonlyMap<string, Uint8Array | null>) => {
    if (forgotten) return
    for (const [key, value] of batch) {
      if (!pending.has(key)) pending.set(key, value)
    }
  }

  const flush: Effect.Effect<void, StoreError | StaleEpoch> = writing.withPermits(1)(Effect.suspend(() => {
    if (pending.size === 0) return Effect.void
    const batch = pending
    pending = new Map()
    inFlight = batch
    const entries: Array<AuthStateEntry> = Array.from(batch, ([key, value]) => ({ key, value }))
    return store.set(fence, sessionId, entries).pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => {
          inFlight = new Map()
          // Also on interruption: the statement may not have run, and writing it again is harmless.
          if (!Exit.isSuccess(exit)) return restore(batch)
          // Written pre-keys live in Postgres from now on, unless changed again meanwhile.
          for (const key of batch.keys()) {
            if (key.startsWith(LAZY_PREFIX) && !pending.has(key)) cache.delete(key)
          }
        })
      ),
      Effect.tapErrorTag("StaleEpoch", (error) =>
        Effect.suspend(() => {
          stale = true
          return Deferred.fail(failed, error)
        })),
      Effect.withSpan("BaileysAuthState.flush", { attributes: { sessionId, entries: entries.length } })
    )
  }))

  /** A key's newest value: a change not yet written, then one being written, then `fallback` (null: deleted). */
  const newest = (key: string, fallback: Uint8Array | undefined): Uint8Array | null | undefined =>
    pending.has(key) ? pending.get(key) : inFlight.has(key) ? inFlight.get(key) : fallback

  const keys: SignalKeyStore = {
    get: async <T extends keyof SignalDataTypeMap>(type: T, ids: Array<string>) => {
      const found: { [id: string]: SignalDataTypeMap[T] } = {}
      const unread: Array<string> = []
      for (const id of ids) {
        const key = keyOf(type, id)
        const bytes = newest(key, cache.get(key))
        if (bytes !== undefined && bytes !== null) found[id] = revive(type, bytes)
        else if (bytes === undefined && key.startsWith(LAZY_PREFIX)) unread.push(id)
      }
      if (unread.length > 0) {
        // A message from a new contact waits for Postgres (down, restarting) rather than being lost undecrypted,
        // for as long as pending writes would wait.
        const stored = await Runtime.runPromise(runtime)(
          store.get(sessionId, unread.map((id) => keyOf(type, id))).pipe(
            Effect.retry({
              schedule: Schedule.exponential("100 millis").pipe(
                Schedule.union(Schedule.spaced("2 seconds")),
                Schedule.upTo(Duration.millis(retryFor))
              ),
              while: (error) => error._tag === "StoreError"
            })
          )
        )
        for (const id of unread) {
          const key = keyOf(type, id)
          // Changed while Postgres was being read: the change wins.
          const bytes = newest(key, stored.get(key))
          if (bytes !== undefined && bytes !== null) found[id] = revive(type, bytes)
        }
      }
      return found
    },
    set: async (data: SignalDataSet) => {
      let ratchet = false
      for (const type of Object.keys(data) as Array<keyof SignalDataTypeMap>) {
        for (const [id, value] of Object.entries(data[type] ?? {})) {
          // Serialised now: Baileys may keep mutating the object after handing it over.
          record(keyOf(type, id), value === null || value === undefined ? null : serialize(value))
          if (RATCHETS.has(type)) ratchet = true
        }
      }
      // A ratchet step is in Postgres before the message it encrypted leaves (our Baileys patch sends a message
      // only once its keys transaction has committed here): a node taking the session over after a crash never
      // encrypts with a key the contact's phone has already used, which it could not decrypt. A failed write fails
      // the transaction, and so the send, whose text stays queued.
      if (ratchet) await Runtime.runPromise(runtime)(flush)
    },
    clear: async () => {
      const stored = await Runtime.runPromise(runtime)(store.getAll(sessionId))
      for (const key of new Set([...cache.keys(), ...stored.keys(), ...pending.keys()])) {
        if (key !== CREDS_KEY) record(key, null)
      }
    }
  }

  const saveCreds = () => {
    record(CREDS_KEY, serialize(creds))
    const nowLinked = isLinked(creds)
    if (nowLinked && !linked) Queue.unsafeOffer(wake, undefined)
    linked = nowLinked
  }

  const forget = writing.withPermits(1)(Effect.suspend(() => {
    forgotten = true
    pending = new Map()
    cache.clear()
    return store.clear(sessionId, fence)
  })).pipe(Effect.withSpan("BaileysAuthState.forget", { attributes: { sessionId } }))

  const writeBehind = Effect.gen(function*() {
    let failures = 0
    let failingSince = 0
    while (true) {
      // Nothing to write: wait for a change rather than waking every interval (a node holds thousands of
      // sessions, nearly all idle). Then give further changes one interval to join the batch.
      if (failures === 0 && pending.size === 0) yield* Queue.take(changed)
      yield* Effect.race(
        Effect.sleep(failures === 0 ? flushEvery : retryDelay(flushEvery, failures)),
        Queue.take(wake)
      )
      // The flush below writes every change signalled so far.
      yield* Queue.takeAll(changed)
      const result = yield* Effect.either(flush)
      if (Either.isRight(result)) {
        failures = 0
        continue
      }
      const error = result.left
      // `flush` has already failed `failed`; a stale owner must not keep trying.
      if (error._tag === "StaleEpoch") return
      const now = yield* Clock.currentTimeMillis
      if (failures === 0) failingSince = now
      failures += 1
      if (now - failingSince >= retryFor) return yield* Deferred.fail(failed, error)
      yield* Effect.logWarning("Auth state flush failed; pending writes kept for a retry").pipe(
        Effect.annotateLogs({ failures, error: error.message })
      )
    }
  })

  // Added before the writer is forked, so it runs after the writer has been interrupted.
  // A stale owner's final write would be rejected too; it is skipped.
  yield* Effect.addFinalizer(() =>
    stale ? Effect.void : flush.pipe(
      // The last chance to save what changed (the credentials of a device paired a moment ago, when WhatsApp
      // restarts the stream right after pairing): a Postgres hiccup gets a few retries over about 3 seconds.
      Effect.retry({
        schedule: Schedule.exponential("200 millis").pipe(Schedule.intersect(Schedule.recurs(4))),
        while: (error) => error._tag === "StoreError"
      }),
      Effect.catchAll((error) =>
        Effect.logWarning("Final auth state flush failed; unsaved changes are lost").pipe(
          Effect.annotateLogs({ sessionId, error: error.message, pending: pending.size })
        )
      )
    )
  )
  yield* Effect.forkScoped(writeBehind)

  return {
    state: { creds, keys },
    saveCreds,
    registered,
    flush,
    failure: Deferred.await(failed),
    forget
  }
}, (effect, sessionId) => Effect.annotateLogs(effect, { sessionId }))

/** Wipes a session's stored auth state (after a logout or a delete). Fenced when a fence is given. */
export const forget = (
  sessionId: SessionId,
  fence?: Fence
): Effect.Effect<void, StoreError | StaleEpoch, AuthState> =>
  Effect.flatMap(AuthState, (store) => store.clear(sessionId, fence))
