import { assert, expect, it, layer } from "@effect/vitest"
import type { SessionId } from "@wacluster/domain/Ids"
import { ShardNumber } from "@wacluster/domain/Shard"
import { AuthCipher } from "@wacluster/store/AuthCipher"
import * as AuthCipherLive from "@wacluster/store/AuthCipher"
import * as AuthState from "@wacluster/store/AuthState"
import * as Database from "@wacluster/store/Database"
import { StaleEpoch, StoreError } from "@wacluster/store/Errors"
import * as Migrations from "@wacluster/store/Migrations"
import * as Sessions from "@wacluster/store/Sessions"
import * as ShardFences from "@wacluster/store/ShardFences"
import * as Tenants from "@wacluster/store/Tenants"
import { freshDatabase, seedSession, storeLayer, TEST_AUTH_KEY } from "@wacluster/store/test/support"
import { addTransactionCapability, type AuthenticationCreds, BufferJSON, Curve, proto } from "@whiskeysockets/baileys"
import { Deferred, Effect, Fiber, Layer, Option, Schedule, type Scope } from "effect"
import { randomBytes } from "node:crypto"
import * as net from "node:net"
import * as BaileysAuthState from "../src/BaileysAuthState.js"

/** A session whose shard is fenced at epoch 1, and the fence its owner writes with. */
/**
 * A session whose shard this test owns: its fence is claimed one above whatever an earlier test left there (two
 * sessions can share a shard, and one test raises its shard's fence as another node would).
 */
const ownedSession = Effect.gen(function*() {
  const session = yield* seedSession()
  const fences = yield* ShardFences.ShardFences
  const epoch = Option.getOrElse(yield* fences.current(session.shard), () => 0) + 1
  assert.isTrue(yield* fences.advance(session.shard, epoch))
  return { session, fence: { shard: ShardNumber.make(session.shard), epoch } }
})

const promise = <A>(evaluate: () => Promise<A> | A) => Effect.promise(async () => evaluate())

/** The stored rows of a session, decrypted. */
const stored = (sessionId: SessionId) => Effect.flatMap(AuthState.AuthState, (store) => store.getAll(sessionId))

const storedJson = (sessionId: SessionId, key: string) =>
  Effect.map(stored(sessionId), (rows) => {
    const value = rows.get(key)
    return value === undefined ? undefined : JSON.parse(new TextDecoder().decode(value), BufferJSON.reviver)
  })

/** Retries `self` until `ready` holds, for at most 5 seconds. */
const eventually = <A, E, R>(self: Effect.Effect<A, E, R>, ready: (a: A) => boolean) =>
  self.pipe(
    Effect.filterOrFail(ready, () => "not yet" as const),
    Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("5 seconds")))
  )

/**
 * The real `AuthState`, recording the entries of every `set` call that completed; `hold` delays each call.
 * (A flush interrupted by the scope's close is written again by the final flush; counting completed calls keeps
 * such a repeat from showing up as an extra batch.)
 */
const recordingSets = (hold: Effect.Effect<void> = Effect.void) =>
  Effect.gen(function*() {
    const real = yield* AuthState.AuthState
    const calls: Array<ReadonlyArray<AuthState.AuthStateEntry>> = []
    const store = AuthState.AuthState.of({
      ...real,
      set: (fence, sessionId, entries) =>
        hold.pipe(
          Effect.zipRight(real.set(fence, sessionId, entries)),
          Effect.tap(() => Effect.sync(() => calls.push(entries)))
        )
    })
    return { calls, store }
  })

/** The stored bytes as they are in the table: `AuthState` over a cipher that hands back what it reads. */
const rawRows = (sessionId: SessionId) =>
  AuthState.make.pipe(
    Effect.provideService(
      AuthCipher,
      AuthCipher.of({
        encrypt: (_s, _k, plaintext) => Effect.succeed(plaintext),
        decrypt: (_s, _k, raw) => Effect.succeed(raw)
      })
    ),
    Effect.flatMap((store) => store.getAll(sessionId))
  )

const silentLogger: Parameters<typeof addTransactionCapability>[1] = {
  level: "silent",
  child: () => silentLogger,
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {}
}

layer(storeLayer("baileys_auth"), { timeout: 60_000, excludeTestServices: true })("BaileysAuthState", (it) => {
  it.effect("real Baileys credentials and keys survive close and reopen, Buffers intact, encrypted at rest", () =>
    Effect.gen(function*() {
      const { fence, session } = yield* ownedSession
      const preKeys = { "1": Curve.generateKeyPair(), "2": Curve.generateKeyPair() }
      const signalSession = randomBytes(420)
      const appStateKey = proto.Message.AppStateSyncKeyData.fromObject({
        keyData: randomBytes(32),
        fingerprint: { rawId: 7, currentIndex: 1, deviceIndexes: [0, 3] },
        timestamp: 1_700_000_000
      })

      // A long interval: only the final flush at scope close writes.
      const creds = yield* Effect.scoped(Effect.gen(function*() {
        const auth = yield* BaileysAuthState.open(session.id, fence, { flushEvery: "1 hour" })
        assert.isFalse(auth.registered)
        yield* promise(() =>
          auth.state.keys.set({ "pre-key": preKeys, "app-state-sync-key": { AAAAAB3x: appStateKey } })
        )
        auth.saveCreds()
        assert.strictEqual((yield* stored(session.id)).size, 0)
        // A signal session is written through (see the test below), the rest at the final flush.
        yield* promise(() => auth.state.keys.set({ session: { "628123456789.0": signalSession } }))
        auth.saveCreds()
        return auth.state.creds
      }))

      const raw = yield* rawRows(session.id)
      assert.sameMembers([...raw.keys()], [
        "creds",
        "pre-key/1",
        "pre-key/2",
        "session/628123456789.0",
        "app-state-sync-key/AAAAAB3x"
      ])
      for (const [key, value] of raw) {
        const bytes = Buffer.from(value)
        // Not JSON (a two-byte marker such as {" turns up in random ciphertext now and then; JSON never does).
        assert.throws(() => JSON.parse(bytes.toString("utf8")), undefined, undefined, `${key} is stored as plain JSON`)
        assert.isFalse(bytes.includes("Buffer"), `${key} is stored as plain JSON`)
      }
      const noisePrivate = Buffer.from(creds.noiseKey.private)
      for (const value of raw.values()) {
        assert.isFalse(Buffer.from(value).includes(noisePrivate.toString("base64")))
        assert.isFalse(Buffer.from(value).includes(signalSession))
      }

      yield* Effect.scoped(Effect.gen(function*() {
        const auth = yield* BaileysAuthState.open(session.id, fence)
        assert.isFalse(auth.registered)
        const reloaded: AuthenticationCreds = auth.state.creds
        expect(reloaded).toEqual(creds)
        assert.isTrue(Buffer.isBuffer(reloaded.noiseKey.private))
        assert.isTrue(Buffer.from(reloaded.noiseKey.private).equals(noisePrivate))
        assert.isTrue(Buffer.isBuffer(reloaded.signedPreKey.signature))
        assert.strictEqual(reloaded.registrationId, creds.registrationId)

        const keys = yield* promise(() => auth.state.keys.get("pre-key", ["1", "2", "3"]))
        assert.sameMembers(Object.keys(keys), ["1", "2"])
        expect(keys).toEqual(preKeys)
        assert.isTrue(Buffer.isBuffer(keys["1"]?.private))

        const sessions = yield* promise(() => auth.state.keys.get("session", ["628123456789.0"]))
        const reloadedSession = sessions["628123456789.0"]
        assert.isTrue(Buffer.isBuffer(reloadedSession))
        assert.isTrue(Buffer.from(reloadedSession ?? []).equals(signalSession))

        const appKeys = yield* promise(() => auth.state.keys.get("app-state-sync-key", ["AAAAAB3x"]))
        const appKey = appKeys["AAAAAB3x"]
        assert.instanceOf(appKey, proto.Message.AppStateSyncKeyData)
        expect(appKey?.toJSON()).toEqual(appStateKey.toJSON())
        assert.isTrue(Buffer.from(appKey?.keyData ?? []).equals(Buffer.from(appStateKey.keyData ?? [])))
      }))
    }))

  it.effect("one-time pre-keys are read from Postgres when asked for, not kept in memory once written", () =>
    Effect.gen(function*() {
      const { fence, session } = yield* ownedSession
      const real = yield* AuthState.AuthState
      const reads: Array<ReadonlyArray<string>> = []
      const counting = AuthState.AuthState.of({
        ...real,
        get: (sessionId, keys) => Effect.zipRight(Effect.sync(() => reads.push(keys)), real.get(sessionId, keys))
      })
      const preKeys = { "1": Curve.generateKeyPair(), "2": Curve.generateKeyPair(), "3": Curve.generateKeyPair() }
      yield* Effect.scoped(Effect.gen(function*() {
        const auth = yield* BaileysAuthState.open(session.id, fence, { flushEvery: "1 hour" })
        yield* promise(() => auth.state.keys.set({ session: { "62811.0": randomBytes(64) } }))
        yield* promise(() => auth.state.keys.set({ "pre-key": preKeys }))
        // Not written yet: served from memory.
        expect(yield* promise(() => auth.state.keys.get("pre-key", ["1"]))).toEqual({ "1": preKeys["1"] })
        assert.deepStrictEqual(reads, [])
        yield* auth.flush
        // Written: read back from Postgres, one query for the ids asked.
        expect(yield* promise(() => auth.state.keys.get("pre-key", ["1", "2", "7"]))).toEqual({
          "1": preKeys["1"],
          "2": preKeys["2"]
        })
        assert.deepStrictEqual(reads, [["pre-key/1", "pre-key/2", "pre-key/7"]])
        // Other keys stay in memory.
        assert.sameMembers(Object.keys(yield* promise(() => auth.state.keys.get("session", ["62811.0"]))), ["62811.0"])
        assert.strictEqual(reads.length, 1)
        // A deleted pre-key is gone at once, though Postgres still has it until the next flush.
        yield* promise(() => auth.state.keys.set({ "pre-key": { "2": null } }))
        expect(yield* promise(() => auth.state.keys.get("pre-key", ["2", "3"]))).toEqual({ "3": preKeys["3"] })
        assert.deepStrictEqual(reads[1], ["pre-key/3"])
      })).pipe(Effect.provideService(AuthState.AuthState, counting))

      // At the next open nothing of the pre-keys is loaded; they are read when asked for.
      yield* Effect.scoped(Effect.gen(function*() {
        reads.length = 0
        const auth = yield* BaileysAuthState.open(session.id, fence)
        assert.deepStrictEqual(reads, [])
        expect(yield* promise(() => auth.state.keys.get("pre-key", ["1", "2", "3"]))).toEqual({
          "1": preKeys["1"],
          "3": preKeys["3"]
        })
      })).pipe(Effect.provideService(AuthState.AuthState, counting))
      assert.sameMembers([...(yield* stored(session.id)).keys()], ["pre-key/1", "pre-key/3", "session/62811.0"])
    }))

  it.effect("a pre-key read waits out a Postgres outage instead of failing the message that needs it", () =>
    Effect.gen(function*() {
      const { fence, session } = yield* ownedSession
      const preKey = Curve.generateKeyPair()
      yield* Effect.scoped(Effect.gen(function*() {
        const auth = yield* BaileysAuthState.open(session.id, fence)
        yield* promise(() => auth.state.keys.set({ "pre-key": { "5": preKey } }))
      }))
      const real = yield* AuthState.AuthState
      let failures = 0
      const outage = AuthState.AuthState.of({
        ...real,
        get: (sessionId, keys) =>
          Effect.suspend(() =>
            ++failures <= 3
              ? Effect.fail(new StoreError({ message: "the database system is starting up", cause: null }))
              : real.get(sessionId, keys)
          )
      })
      yield* Effect.scoped(Effect.gen(function*() {
        const auth = yield* BaileysAuthState.open(session.id, fence)
        expect(yield* promise(() => auth.state.keys.get("pre-key", ["5"]))).toEqual({ "5": preKey })
      })).pipe(Effect.provideService(AuthState.AuthState, outage))
      assert.strictEqual(failures, 4)
    }))

  it.effect("many changes within one interval are written by one fenced set; only changes are written", () =>
    Effect.gen(function*() {
      const { fence, session } = yield* ownedSession
      const { calls, store } = yield* recordingSets()
      yield* Effect.scoped(
        Effect.gen(function*() {
          const auth = yield* BaileysAuthState.open(session.id, fence, { flushEvery: "300 millis" })
          yield* promise(() => {
            const writes = Array.from(
              { length: 40 },
              (_, i) => auth.state.keys.set({ "pre-key": { [String(i + 1)]: Curve.generateKeyPair() } })
            )
            writes.push(
              auth.state.keys.set({ "sender-key-memory": { "120363@g.us": { "62811@s.whatsapp.net": true } } })
            )
            writes.push(auth.state.keys.set({ "lid-mapping": { "62811": "first" } }))
            writes.push(auth.state.keys.set({ "lid-mapping": { "62811": "second" } }))
            auth.saveCreds()
            return Promise.all(writes)
          })
          yield* eventually(Effect.sync(() => calls.length), (n) => n > 0)
          // Two more intervals pass with nothing new to write.
          yield* Effect.sleep("700 millis")
          assert.strictEqual(calls.length, 1)
          assert.strictEqual(calls[0]?.length, 43)
          const rows = yield* stored(session.id)
          assert.strictEqual(rows.size, 43)
          assert.strictEqual(yield* storedJson(session.id, "lid-mapping/62811"), "second")

          yield* promise(() => auth.state.keys.set({ "pre-key": { "41": Curve.generateKeyPair() } }))
          yield* eventually(Effect.sync(() => calls.length), (n) => n > 1)
          assert.deepStrictEqual(calls[1]?.map((entry) => entry.key), ["pre-key/41"])
        }).pipe(Effect.provideService(AuthState.AuthState, store))
      )
      // The final flush had nothing left to write.
      assert.strictEqual(calls.length, 2)
    }))

  it.effect("null values delete: at once in memory, and from the table at the next flush", () =>
    Effect.gen(function*() {
      const { fence, session } = yield* ownedSession
      yield* Effect.scoped(Effect.gen(function*() {
        const auth = yield* BaileysAuthState.open(session.id, fence, { flushEvery: "1 hour" })
        yield* promise(() =>
          auth.state.keys.set({
            "pre-key": { "1": Curve.generateKeyPair(), "2": Curve.generateKeyPair() },
            "sender-key": { "120363@g.us::62811::0": randomBytes(64) }
          })
        )
        yield* auth.flush
        assert.sameMembers([...(yield* stored(session.id)).keys()], [
          "pre-key/1",
          "pre-key/2",
          "sender-key/120363@g.us::62811::0"
        ])

        yield* promise(() => auth.state.keys.set({ "pre-key": { "1": null } }))
        assert.sameMembers(Object.keys(yield* promise(() => auth.state.keys.get("pre-key", ["1", "2"]))), ["2"])
        assert.strictEqual((yield* stored(session.id)).size, 3)
        // A ratchet's deletion is written through, with the pending one.
        yield* promise(() => auth.state.keys.set({ "sender-key": { "120363@g.us::62811::0": null } }))
        assert.sameMembers([...(yield* stored(session.id)).keys()], ["pre-key/2"])
      }))
    }))

  it.effect("the linking write is flushed at once, without waiting for the interval", () =>
    Effect.gen(function*() {
      const { fence, session } = yield* ownedSession
      const me = { id: "628123456789:4@s.whatsapp.net", lid: "102938475610:4@lid", name: "Ayu" }
      yield* Effect.scoped(
        Effect.gen(function*() {
          const auth = yield* BaileysAuthState.open(session.id, fence, { flushEvery: "1 hour" })
          // An ordinary credentials change waits for the interval.
          Object.assign(auth.state.creds, { accountSyncCounter: 1 })
          auth.saveCreds()
          yield* Effect.sleep("300 millis")
          assert.strictEqual((yield* stored(session.id)).size, 0)

          // What Baileys does on pair-success: it assigns the update, then the app's creds.update handler runs.
          Object.assign(auth.state.creds, { me, platform: "android" })
          auth.saveCreds()
          const creds = yield* eventually(storedJson(session.id, "creds"), (value) => value !== undefined)
          expect(creds).toMatchObject({ me, platform: "android", accountSyncCounter: 1 })
        }).pipe(Effect.timeout("10 seconds"))
      )

      const reopened = yield* Effect.scoped(BaileysAuthState.open(session.id, fence))
      assert.isTrue(reopened.registered)
      expect(reopened.state.creds.me).toEqual(me)
    }))

  it.effect("works under the transaction layer Baileys' socket puts on top of the key store", () =>
    Effect.gen(function*() {
      const { fence, session } = yield* ownedSession
      yield* Effect.scoped(Effect.gen(function*() {
        const auth = yield* BaileysAuthState.open(session.id, fence, { flushEvery: "1 hour" })
        yield* promise(() => auth.state.keys.set({ "pre-key": { "7": Curve.generateKeyPair() } }))
        yield* auth.flush
        // As in lib/Socket/socket.js.
        const keys = addTransactionCapability(auth.state.keys, silentLogger, {
          maxCommitRetries: 2,
          delayBetweenTriesMs: 10
        })
        const record = randomBytes(100)
        const found = yield* promise(() =>
          keys.transaction(async () => {
            const preKey = (await keys.get("pre-key", ["7"]))["7"]
            await keys.set({ session: { "628123456789.0": record }, "pre-key": { "7": null } })
            return preKey
          }, "628123456789.0")
        )
        assert.isTrue(Buffer.isBuffer(found?.private))
        // Deleting a pre-key that does not exist is skipped by Baileys after asking the store.
        yield* promise(() => keys.set({ "pre-key": { "8": null } }))
        yield* auth.flush
      }))
      const rows = yield* stored(session.id)
      assert.sameMembers([...rows.keys()], ["session/628123456789.0"])
    }))

  it.effect("a signal session or sender key is in Postgres when its write resolves; other keys wait their turn", () =>
    Effect.gen(function*() {
      const { fence, session } = yield* ownedSession
      yield* Effect.scoped(Effect.gen(function*() {
        const auth = yield* BaileysAuthState.open(session.id, fence, { flushEvery: "1 hour" })
        // Written behind, an hour from now.
        yield* promise(() => auth.state.keys.set({ "pre-key": { "3": Curve.generateKeyPair() } }))
        assert.strictEqual((yield* stored(session.id)).size, 0)
        // A ratchet step: written through, with everything pending before it.
        const record = randomBytes(100)
        yield* promise(() => auth.state.keys.set({ session: { "628123456789.0": record } }))
        assert.sameMembers([...(yield* stored(session.id)).keys()], ["pre-key/3", "session/628123456789.0"])
        yield* promise(() => auth.state.keys.set({ "sender-key": { "group@g.us::628123456789::0": randomBytes(40) } }))
        assert.isTrue((yield* stored(session.id)).has("sender-key/group@g.us::628123456789::0"))
        // Under Baileys' transaction layer, the commit (which sendMessage now awaits before the message leaves)
        // resolves only once the step is stored.
        const keys = addTransactionCapability(auth.state.keys, silentLogger, {
          maxCommitRetries: 2,
          delayBetweenTriesMs: 10
        })
        const next = randomBytes(100)
        yield* promise(() =>
          keys.transaction(async () => {
            await keys.set({ session: { "628123456789.0": next } })
          }, "628123456789.0")
        )
        const rows = yield* stored(session.id)
        assert.deepStrictEqual(
          Buffer.from(rows.get("session/628123456789.0") ?? new Uint8Array()),
          Buffer.from(JSON.stringify(next, BufferJSON.replacer))
        )
      }))
    }))

  it.effect("a ratchet step that cannot be stored fails its write, so the message it encrypted is not sent", () =>
    Effect.gen(function*() {
      const { fence, session } = yield* ownedSession
      yield* Effect.scoped(Effect.gen(function*() {
        const auth = yield* BaileysAuthState.open(session.id, fence, { flushEvery: "1 hour" })
        // Another node owns the shard now: every write of this one is fenced out.
        yield* (yield* ShardFences.ShardFences).advance(fence.shard, fence.epoch + 1)
        const written = yield* promise(() =>
          Promise.resolve(auth.state.keys.set({ session: { "628123456789.0": randomBytes(100) } })).then(
            () => "written",
            () => "refused"
          )
        )
        assert.strictEqual(written, "refused")
        assert.strictEqual((yield* stored(session.id)).size, 0)
      }))
    }))

  it.effect("changes made while a flush is in flight are written by the next flush", () =>
    Effect.gen(function*() {
      const { fence, session } = yield* ownedSession
      const inFlight = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const { calls, store } = yield* recordingSets(
        Effect.suspend(() => Deferred.succeed(inFlight, undefined)).pipe(Effect.zipRight(Deferred.await(release)))
      )
      yield* Effect.scoped(
        Effect.gen(function*() {
          const auth = yield* BaileysAuthState.open(session.id, fence, { flushEvery: "1 hour" })
          yield* promise(() => auth.state.keys.set({ "device-list": { "62811": ["0", "1"] } }))
          const first = yield* Effect.fork(auth.flush)
          yield* Deferred.await(inFlight)
          yield* promise(() => auth.state.keys.set({ "device-list": { "62811": ["0", "1", "2"], "62822": ["0"] } }))
          yield* Deferred.succeed(release, undefined)
          yield* Fiber.join(first)
          assert.deepStrictEqual(yield* storedJson(session.id, "device-list/62811"), ["0", "1"])
          yield* auth.flush
        }).pipe(Effect.provideService(AuthState.AuthState, store))
      )
      assert.strictEqual(calls.length, 2)
      assert.deepStrictEqual(yield* storedJson(session.id, "device-list/62811"), ["0", "1", "2"])
      assert.deepStrictEqual(yield* storedJson(session.id, "device-list/62822"), ["0"])
    }))

  it.effect("the final flush (the socket closing) retries a failing Postgres before it gives anything up", () =>
    Effect.gen(function*() {
      const { fence, session } = yield* ownedSession
      const real = yield* AuthState.AuthState
      let attempts = 0
      const flaky = AuthState.AuthState.of({
        ...real,
        set: (fence, sessionId, entries) =>
          ++attempts <= 2
            ? Effect.fail(new StoreError({ message: "connection terminated unexpectedly", cause: null }))
            : real.set(fence, sessionId, entries)
      })
      yield* Effect.scoped(Effect.gen(function*() {
        const auth = yield* BaileysAuthState.open(session.id, fence, { flushEvery: "1 hour" })
        // Paired a moment ago, and the socket closes before the interval: only the final flush can save it.
        Object.assign(auth.state.creds, { me: { id: "628123456789:4@s.whatsapp.net" } })
        yield* promise(() => auth.state.keys.set({ "device-list": { "62811": ["0"] } }))
      })).pipe(Effect.provideService(AuthState.AuthState, flaky))
      assert.strictEqual(attempts, 3)
      assert.deepStrictEqual(yield* storedJson(session.id, "device-list/62811"), ["0"])
    }))

  it.effect("once another node advanced the shard's fence, the background flush fails `failure` with StaleEpoch", () =>
    Effect.gen(function*() {
      const { fence, session } = yield* ownedSession
      yield* Effect.scoped(Effect.gen(function*() {
        const auth = yield* BaileysAuthState.open(session.id, fence, { flushEvery: "100 millis" })
        const failure = yield* Effect.fork(Effect.flip(auth.failure))
        yield* promise(() => auth.state.keys.set({ "pre-key": { "1": Curve.generateKeyPair() } }))
        yield* auth.flush
        const before = yield* rawRows(session.id)

        assert.isTrue(yield* (yield* ShardFences.ShardFences).advance(session.shard, fence.epoch + 1))
        yield* promise(() => auth.state.keys.set({ "pre-key": { "1": null, "2": Curve.generateKeyPair() } }))
        Object.assign(auth.state.creds, { me: { id: "628123456789:4@s.whatsapp.net" } })
        auth.saveCreds()

        const error = yield* Fiber.join(failure).pipe(Effect.timeout("5 seconds"))
        assert.instanceOf(error, StaleEpoch)
        assert.deepInclude(error, { shard: session.shard, epoch: fence.epoch, current: fence.epoch + 1 })
        assert.instanceOf(yield* Effect.flip(auth.flush), StaleEpoch)
        // Still in memory for the socket that is about to be closed, but nothing reached the table.
        assert.sameMembers(Object.keys(yield* promise(() => auth.state.keys.get("pre-key", ["1", "2"]))), ["2"])
        assert.deepStrictEqual(yield* rawRows(session.id), before)
      }))
      assert.sameMembers([...(yield* stored(session.id)).keys()], ["pre-key/1"])
    }))

  it.effect("forget drops pending writes and wipes the stored state; the final flush writes nothing back", () =>
    Effect.gen(function*() {
      const { fence, session } = yield* ownedSession
      yield* Effect.scoped(Effect.gen(function*() {
        const auth = yield* BaileysAuthState.open(session.id, fence, { flushEvery: "1 hour" })
        Object.assign(auth.state.creds, { me: { id: "628123456789:4@s.whatsapp.net" } })
        auth.saveCreds()
        yield* eventually(stored(session.id), (rows) => rows.has("creds"))
        yield* promise(() => auth.state.keys.set({ "pre-key": { "1": Curve.generateKeyPair() } }))
        yield* auth.forget
        auth.saveCreds()
        assert.strictEqual((yield* stored(session.id)).size, 0)
      }))
      assert.strictEqual((yield* stored(session.id)).size, 0)

      const other = yield* ownedSession
      yield* Effect.scoped(Effect.gen(function*() {
        const auth = yield* BaileysAuthState.open(other.session.id, other.fence)
        auth.saveCreds()
      }))
      assert.strictEqual((yield* stored(other.session.id)).size, 1)
      yield* BaileysAuthState.forget(other.session.id)
      assert.strictEqual((yield* stored(other.session.id)).size, 0)
      const reopened = yield* Effect.scoped(BaileysAuthState.open(other.session.id, other.fence))
      assert.isFalse(reopened.registered)
    }))
})

/**
 * A TCP proxy in front of Postgres that can cut the network: `down` resets every connection and refuses new
 * ones; `blackhole` silently drops what clients send, so statements hang; `up` resets the hung connections and
 * forwards again.
 */
const flakyProxy = (target: URL): Effect.Effect<
  { readonly url: string; readonly set: (mode: "up" | "down" | "blackhole") => Effect.Effect<void> },
  never,
  Scope.Scope
> =>
  Effect.gen(function*() {
    let mode: "up" | "down" | "blackhole" = "up"
    const sockets = new Set<net.Socket>()
    const resetAll = () => {
      for (const socket of sockets) socket.destroy()
      sockets.clear()
    }
    const server = net.createServer((client) => {
      if (mode === "down") return client.destroy()
      const upstream = net.connect(Number(target.port), target.hostname)
      sockets.add(client).add(upstream)
      client.on("data", (data) => {
        if (mode === "up") upstream.write(data)
      })
      upstream.on("data", (data) => client.write(data))
      client.on("error", () => upstream.destroy())
      upstream.on("error", () => client.destroy())
      client.on("close", () => upstream.destroy())
      upstream.on("close", () => client.destroy())
    })
    const port = yield* Effect.acquireRelease(
      Effect.async<number>((resume) => {
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          resetAll()
          server.close(() => resume(Effect.void))
        })
    )
    const url = new URL(target)
    url.hostname = "127.0.0.1"
    url.port = String(port)
    return {
      url: url.toString(),
      set: (next) =>
        Effect.sync(() => {
          if (next !== "blackhole") resetAll()
          mode = next
        })
    }
  })

it.scopedLive(
  "a store outage keeps pending writes, retries them, and fails `failure` only after retryFor",
  () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase("baileys_auth_outage")
      const cipher = AuthCipherLive.layerFromKey(TEST_AUTH_KEY)
      const direct = yield* Layer.build(
        Layer.mergeAll(Tenants.layer, Sessions.layer, ShardFences.layer, AuthState.layer.pipe(Layer.provide(cipher)))
          .pipe(
            Layer.provideMerge(Migrations.layer),
            Layer.provideMerge(Database.layerFromUrl(url)),
            Layer.orDie
          )
      )
      const proxy = yield* flakyProxy(new URL(url))
      const throughProxy = yield* Layer.build(
        AuthState.layer.pipe(
          Layer.provide(cipher),
          Layer.provide(Database.layerFromUrl(proxy.url, { maxConnections: 2 })),
          Layer.orDie
        )
      )

      const { fence, session } = yield* ownedSession.pipe(Effect.provide(direct))
      const readBack = (key: string) => storedJson(session.id, key).pipe(Effect.provide(direct))

      yield* Effect.scoped(
        Effect.gen(function*() {
          const auth = yield* BaileysAuthState.open(session.id, fence, {
            flushEvery: "100 millis",
            retryFor: "1 minute"
          })
          const failure = yield* Effect.fork(auth.failure)

          // The statement hangs; a newer value arrives while it is in flight; then the connection breaks.
          yield* proxy.set("blackhole")
          yield* promise(() => auth.state.keys.set({ "lid-mapping": { "62811": "older" } }))
          yield* Effect.sleep("400 millis")
          yield* promise(() =>
            auth.state.keys.set({ "lid-mapping": { "62811": "newer" }, "device-list": { "62811": ["0"] } })
          )
          yield* proxy.set("down")
          yield* Effect.sleep("600 millis")
          assert.isUndefined(yield* readBack("lid-mapping/62811"))
          assert.isTrue(Option.isNone(yield* Fiber.poll(failure)))

          yield* proxy.set("up")
          yield* eventually(readBack("device-list/62811"), (value) => value !== undefined)
          assert.strictEqual(yield* readBack("lid-mapping/62811"), "newer")
          assert.isTrue(Option.isNone(yield* Fiber.poll(failure)))
        }).pipe(Effect.provide(throughProxy))
      )

      yield* Effect.scoped(
        Effect.gen(function*() {
          const auth = yield* BaileysAuthState.open(session.id, fence, {
            flushEvery: "100 millis",
            retryFor: "500 millis"
          })
          yield* proxy.set("down")
          yield* promise(() => auth.state.keys.set({ "lid-mapping": { "62822": "lost" } }))
          const error = yield* Effect.flip(auth.failure).pipe(Effect.timeout("10 seconds"))
          assert.instanceOf(error, StoreError)
          yield* proxy.set("up")
        }).pipe(Effect.provide(throughProxy))
      )
      // The final flush at close still wrote what was pending once the store was back.
      assert.strictEqual(yield* readBack("lid-mapping/62822"), "lost")
    }),
  { timeout: 60_000 }
)
