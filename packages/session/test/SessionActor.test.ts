import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { MessageId, type SessionId } from "@wacluster/domain/Ids"
import {
  type AcceptedMessage,
  GetHealth,
  GetStatus,
  QueueText,
  Reconnect,
  SendText,
  type SentText,
  type SessionCommand,
  type SessionHealthView,
  type SessionStatusView,
  StopSession,
  type Unlinked,
  UnlinkSession
} from "@wacluster/domain/Protocol"
import { ShardNumber } from "@wacluster/domain/Shard"
import { Outbox } from "@wacluster/store/Outbox"
import { type RuntimeRecord, SessionRuntime } from "@wacluster/store/SessionRuntime"
import { Sessions } from "@wacluster/store/Sessions"
import { ShardFences } from "@wacluster/store/ShardFences"
import { seedSession, storeLayer } from "@wacluster/store/test/support"
import * as InProcessDriver from "@wacluster/whatsapp/InProcessDriver"
import { InProcessWhatsApp } from "@wacluster/whatsapp/InProcessDriver"
import { ProxyConfig } from "@wacluster/whatsapp/ProxyConfig"
import { WhatsAppDriver } from "@wacluster/whatsapp/WhatsAppDriver"
import { Chunk, Clock, Deferred, Duration, Effect, Exit, Fiber, Layer, Option, TestClock } from "effect"
import { defaultBackoff } from "../src/Backoff.js"
import * as ConnectGate from "../src/ConnectGate.js"
import { defaultIntensity } from "../src/RestartIntensity.js"
import * as SessionActor from "../src/SessionActor.js"

const options: SessionActor.ActorOptions = {
  mailboxCapacity: 8,
  backoff: defaultBackoff,
  intensity: defaultIntensity,
  connectGate: ConnectGate.unsafeMake(64),
  connectHeadroom: Effect.void,
  persistEvery: Duration.seconds(30),
  persistIdleEvery: Duration.minutes(5),
  sendInterval: Duration.zero,
  queueMaxAge: Duration.hours(1),
  rateLimits: { requestsPerMinute: 6_000, messagesPerHour: 10_000 },
  leaseHeld: Effect.succeed(true),
  eventsCommitted: Effect.void
}

const TestLayer = Layer.mergeAll(
  InProcessDriver.layer({ firstQrTimeout: "60 seconds", qrTimeout: "20 seconds", qrAttempts: 3 }),
  ProxyConfig.layerWith({}),
  storeLayer("session_actor")
)

/** Lets real I/O (Postgres) finish while the test clock stands still. */
const settle = Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 30)))

const start = (shard = 1, epoch = 10, actorOptions: SessionActor.ActorOptions = options) =>
  Effect.gen(function*() {
    const session = yield* seedSession({ shard })
    yield* (yield* ShardFences).advance(shard, epoch)
    const actor = yield* SessionActor.make(session.id, { shard: ShardNumber.make(shard), epoch }, actorOptions)
    const fiber = yield* Effect.forkScoped(actor.run)
    return { sessionId: session.id, handle: actor.handle, fiber }
  })

const status = (handle: SessionActor.SessionActorHandle) =>
  Effect.gen(function*() {
    const reply = yield* handle.offer(new GetStatus({ sessionId: handle.sessionId })).pipe(Effect.orDie)
    return (yield* Deferred.await(reply)) as SessionStatusView
  })

/**
 * The session's saved state once `check` holds (or as it stands after a while): an actor shows a new status a moment
 * before the save of it commits.
 */
const savedWhen = (sessionId: SessionId, check: (record: RuntimeRecord) => boolean) =>
  Effect.gen(function*() {
    const runtime = yield* SessionRuntime
    let saved = Option.getOrThrow(yield* runtime.load(sessionId))
    for (let i = 0; i < 100 && !check(saved); i++) {
      yield* settle
      saved = Option.getOrThrow(yield* runtime.load(sessionId))
    }
    return saved
  })

/** Sends a command and waits for its answer. */
const ask = (handle: SessionActor.SessionActorHandle, command: SessionCommand) =>
  Effect.flatMap(Effect.orDie(handle.offer(command)), (reply) => Effect.orDie(Deferred.await(reply)))

/** Waits (on the real clock) until the actor reports the expected status. */
const until = (handle: SessionActor.SessionActorHandle, check: (view: SessionStatusView) => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200; i++) {
      const view = yield* status(handle)
      if (check(view)) return view
      yield* settle
    }
    return yield* Effect.dieMessage(`status never matched; last: ${JSON.stringify(yield* status(handle))}`)
  })

/**
 * Drops the session's socket and waits (on the real clock) until the actor is disconnected and sleeping on the test
 * clock for its backoff (or park): moving the clock before that sleep has started would leave it waiting for good.
 * The backoff is told from the actor's other timers (the periodic save re-arms itself whenever the clock passes it)
 * by when it is due: within `due` of now (1-3 s after a connected socket; the park's 15 minutes).
 */
const dropAndAwaitBackoff = (
  handle: SessionActor.SessionActorHandle,
  sessionId: SessionId,
  due: readonly [Duration.DurationInput, Duration.DurationInput] = ["1 second", "3 seconds"]
) =>
  Effect.gen(function*() {
    const network = yield* InProcessWhatsApp
    const now = yield* Clock.currentTimeMillis
    const [from, to] = [now + Duration.toMillis(due[0]), now + Duration.toMillis(due[1])]
    const pending = (yield* TestClock.sleeps()).pipe(Chunk.filter((at) => at >= from && at <= to)).length
    yield* network.drop(sessionId)
    const view = yield* until(handle, (v) => v.status === "disconnected")
    for (let i = 0; i < 500; i++) {
      const sleeps = yield* TestClock.sleeps()
      if (Chunk.filter(sleeps, (at) => at >= from && at <= to).length > pending) return view
      yield* settle
    }
    return yield* Effect.dieMessage("the actor never started its backoff")
  })

const qrOf = (sessionId: SessionId) =>
  Effect.gen(function*() {
    const network = yield* InProcessWhatsApp
    for (let i = 0; i < 100; i++) {
      const qr = yield* network.currentQr(sessionId)
      if (Option.isSome(qr)) return qr.value
      yield* settle
    }
    return yield* Effect.dieMessage("no QR code")
  })

const link = (sessionId: SessionId, phone = "628123456789") =>
  Effect.gen(function*() {
    const network = yield* InProcessWhatsApp
    yield* network.scan(yield* qrOf(sessionId), phone)
  })

describe("SessionActor", () => {
  it.layer(TestLayer, { timeout: 60_000 })((it) => {
    it.scoped("shows QR codes while connecting and expires when none is scanned in time", () =>
      Effect.gen(function*() {
        const { handle, sessionId } = yield* start()
        const first = yield* qrOf(sessionId)
        const view = yield* until(handle, (v) => v.status === "connecting")
        expect(view.health).toBe("degraded")
        expect(view.connectedAt).toBeNull()

        yield* TestClock.adjust("60 seconds")
        yield* settle
        expect(yield* qrOf(sessionId)).not.toBe(first)
        yield* TestClock.adjust("20 seconds")
        yield* settle
        yield* TestClock.adjust("20 seconds")
        const expired = yield* until(handle, (v) => v.status === "expired")
        expect(expired.health).toBe("unhealthy")
        // Expired is final until the tenant asks again: no new QR appears however long we wait.
        yield* TestClock.adjust("10 minutes")
        yield* settle
        expect(Option.isNone(yield* (yield* InProcessWhatsApp).currentQr(sessionId))).toBe(true)
        const saved = yield* (yield* SessionRuntime).load(sessionId)
        expect(Option.map(saved, (r) => [r.status, r.reason])).toEqual(Option.some(["expired", "qr_timeout"]))
      }))

    it.scoped("connects after a scan (through WhatsApp's restart request) and persists it", () =>
      Effect.gen(function*() {
        const { handle, sessionId } = yield* start()
        yield* link(sessionId, "628111222333")
        const view = yield* until(handle, (v) => v.status === "connected")
        expect(view.health).toBe("healthy")
        expect(view.connectedAt).not.toBeNull()
        const saved = yield* savedWhen(sessionId, (r) => r.status === "connected")
        expect(saved.status).toBe("connected")
        expect(saved.phoneNumber).toBe("628111222333")
        expect(saved.epoch).toBe(10)
      }))

    it.scoped("reconnects after a drop with backoff, never holding two sockets, and counts uptime", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const { handle, sessionId } = yield* start()
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        yield* TestClock.adjust("90 seconds")

        const down = yield* dropAndAwaitBackoff(handle, sessionId)
        expect(down.health).toBe("unhealthy")
        expect(yield* network.liveSockets).toBe(0)
        // Backoff: 1 s to 3 s for the first retry. The clock stops at 3 s: the reconnect reads the time when it
        // gets to run, anywhere between its wake-up and the end of the adjustment on a busy machine.
        yield* TestClock.adjust("3 seconds")
        const back = yield* until(handle, (v) => v.status === "connected")
        expect(yield* network.liveSockets).toBe(1)
        // 90 s connected, then down for 1-3 s, then connected again: 90 of 91-93 s observed.
        expect(back.metrics.uptime).toBeGreaterThanOrEqual(96.7)
        expect(back.metrics.uptime).toBeLessThanOrEqual(99)
      }))

    it.scoped("parks a session that keeps failing as disconnected/failing, then tries again after the park", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const { handle, sessionId } = yield* start()
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        // Ten drops within five minutes are restarted with backoff (1-3 s after a connected socket).
        for (let restart = 1; restart <= defaultIntensity.maxRestarts; restart++) {
          yield* dropAndAwaitBackoff(handle, sessionId)
          yield* TestClock.adjust("5 seconds")
          yield* until(handle, (v) => v.status === "connected")
        }
        // The eleventh is one too many: parked, no socket, and it says why.
        yield* dropAndAwaitBackoff(handle, sessionId, [defaultIntensity.parkFor, defaultIntensity.parkFor])
        const parked = yield* savedWhen(sessionId, (r) => r.reason === "failing")
        expect([parked.status, parked.reason]).toEqual(["disconnected", "failing"])
        yield* TestClock.adjust("14 minutes")
        yield* settle
        expect(yield* network.liveSockets).toBe(0)
        expect((yield* status(handle)).status).toBe("disconnected")
        // After the park it tries again, with a clean history.
        yield* TestClock.adjust("1 minute")
        yield* until(handle, (v) => v.status === "connected")
        expect(yield* network.liveSockets).toBe(1)
      }))

    it.scoped("counts restarts in a sliding window: drops spread over time never park the session", () =>
      Effect.gen(function*() {
        const { handle, sessionId } = yield* start()
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        // Fifteen drops, one a minute: at most five in any five minutes.
        for (let restart = 1; restart <= 15; restart++) {
          yield* dropAndAwaitBackoff(handle, sessionId)
          yield* TestClock.adjust("1 minute")
          yield* until(handle, (v) => v.status === "connected")
        }
        const saved = yield* savedWhen(sessionId, (r) => r.status === "connected")
        expect(saved.status).toBe("connected")
      }))

    it.scoped("never leaves an older state saved: a slow periodic save and a status change's save take turns", () =>
      Effect.gen(function*() {
        // The store's saves, with one of them held back on demand (the periodic save stuck behind a busy pool).
        const runtime = yield* SessionRuntime
        const release = yield* Deferred.make<void>()
        let holdNext = false
        let held = false
        const slowRuntime = SessionRuntime.of({
          ...runtime,
          save: (fence, state) =>
            Effect.suspend(() => {
              if (!holdNext) return runtime.save(fence, state)
              holdNext = false
              held = true
              return Effect.zipRight(Deferred.await(release), runtime.save(fence, state))
            })
        })
        const slowSaves = {
          ...options,
          persistEvery: Duration.seconds(1),
          persistIdleEvery: Duration.seconds(1),
          backoff: { base: Duration.seconds(10), cap: Duration.seconds(30) }
        }
        const session = yield* seedSession({ shard: 1 })
        yield* (yield* ShardFences).advance(1, 10)
        const actor = yield* SessionActor.make(session.id, { shard: ShardNumber.make(1), epoch: 10 }, slowSaves).pipe(
          Effect.provideService(SessionRuntime, slowRuntime)
        )
        yield* Effect.forkScoped(actor.run)
        const { handle } = actor
        yield* link(session.id)
        yield* until(handle, (v) => v.status === "connected")
        yield* dropAndAwaitBackoff(handle, session.id, ["10 seconds", "30 seconds"])

        // The periodic save reads "disconnected" and is held; the backoff ends and the session connects again.
        holdNext = true
        yield* TestClock.adjust("1 second")
        for (let i = 0; i < 100 && !held; i++) yield* settle
        expect(held).toBe(true)
        yield* TestClock.adjust("30 seconds")
        for (let i = 0; i < 10; i++) yield* settle
        yield* Deferred.succeed(release, undefined)

        yield* until(handle, (v) => v.status === "connected")
        const saved = yield* savedWhen(session.id, (r) => r.status === "connected")
        expect([saved.status, saved.reason]).toEqual(["connected", null])
      }))

    it.scoped("an idle session saves its uptime every persistIdleEvery, and changed counters at the next tick", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const { handle, sessionId } = yield* start()
        const runtime = yield* SessionRuntime
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        const connected = yield* savedWhen(sessionId, (r) => r.status === "connected")

        // Nothing but the clock changes: the 30-second ticks write nothing for five minutes.
        for (let tick = 0; tick < 9; tick++) {
          yield* TestClock.adjust("30 seconds")
          yield* settle
        }
        const idle = Option.getOrThrow(yield* runtime.load(sessionId))
        expect(idle.updatedAt).toEqual(connected.updatedAt)
        expect(idle.connectedMs).toBe(connected.connectedMs)

        // Then uptime is saved once five minutes have passed since the last save.
        yield* TestClock.adjust("60 seconds")
        const uptime = yield* savedWhen(sessionId, (r) => r.connectedMs > connected.connectedMs)
        expect(uptime.connectedMs - connected.connectedMs).toBeGreaterThanOrEqual(300_000)

        // A counter that changed is saved at the next tick.
        yield* network.receive(sessionId, "6281111111111@s.whatsapp.net", "hello")
        yield* until(handle, (v) => v.metrics.messagesReceived === 1)
        yield* TestClock.adjust("30 seconds")
        const counted = yield* savedWhen(sessionId, (r) => r.messagesReceived === 1)
        expect(counted.messagesReceived).toBe(1)
      }))

    it.scoped("stays disconnected/logged_out after the phone unlinks the device, without reconnecting", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const { handle, sessionId } = yield* start()
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        yield* network.logoutFromPhone(sessionId)
        yield* until(handle, (v) => v.status === "disconnected")
        yield* TestClock.adjust("10 minutes")
        yield* settle
        expect(yield* network.liveSockets).toBe(0)
        const saved = Option.getOrThrow(yield* (yield* SessionRuntime).load(sessionId))
        expect([saved.status, saved.reason]).toEqual(["disconnected", "logged_out"])
      }))

    it.scoped("does not fight a conflicting login: it stops as disconnected/conflict", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const driver = yield* WhatsAppDriver
        const { handle, sessionId } = yield* start()
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        // Someone else logs in with this device.
        yield* driver.connect({ sessionId, fence: { shard: ShardNumber.make(1), epoch: 99 } })
        yield* until(handle, (v) => v.status === "disconnected")
        yield* TestClock.adjust("10 minutes")
        yield* settle
        expect(yield* network.liveSockets).toBe(1)
        const saved = Option.getOrThrow(yield* (yield* SessionRuntime).load(sessionId))
        expect([saved.status, saved.reason]).toEqual(["disconnected", "conflict"])
      }))

    it.scoped("a conflict after its shard moved: it asks for the lease, stops for good and records nothing", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const driver = yield* WhatsAppDriver
        let asked = 0
        const { fiber, handle, sessionId } = yield* start(1, 10, {
          ...options,
          leaseHeld: Effect.sync(() => {
            asked++
            return false
          })
        })
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        // The shard's new owner logs the device in.
        yield* driver.connect({ sessionId, fence: { shard: ShardNumber.make(1), epoch: 11 } })
        const exit = yield* Fiber.await(fiber)
        expect(asked).toBe(1)
        expect(Exit.isFailure(exit) && JSON.stringify(exit.cause).includes("Replaced")).toBe(true)
        expect(yield* network.liveSockets).toBe(1)
        // The last state it saved is the connected one: "conflict" would have been the old owner's view only.
        const saved = Option.getOrThrow(yield* (yield* SessionRuntime).load(sessionId))
        expect(saved.status).toBe("connected")
      }))

    it.scoped("a logged-out session waits for Reconnect, which shows a new QR code at once", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const { handle, sessionId } = yield* start()
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        yield* network.logoutFromPhone(sessionId)
        yield* until(handle, (v) => v.status === "disconnected")
        const reply = yield* handle.offer(new Reconnect({ sessionId })).pipe(Effect.orDie)
        const answer = (yield* Deferred.await(reply)) as SessionStatusView
        expect(answer.status).toBe("connecting")
        // The old credentials were wiped: a new QR code, without advancing the clock.
        yield* qrOf(sessionId)
        yield* link(sessionId, "628555666777")
        yield* until(handle, (v) => v.status === "connected")
      }))

    it.scoped("queues texts while not connected, shows them in health, and sends them in order once connected", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const { handle, sessionId } = yield* start()
        const ask = <A>(command: QueueText | GetHealth) =>
          handle.offer(command).pipe(Effect.orDie, Effect.flatMap(Deferred.await), Effect.orDie) as Effect.Effect<A>
        const queue = (text: string, idempotencyKey: string | null = null) =>
          ask<AcceptedMessage>(new QueueText({ sessionId, to: "628999000111@s.whatsapp.net", text, idempotencyKey }))
        const first = yield* queue("one", "k-1")
        expect(first.status).toBe("queued")
        yield* queue("two")
        yield* queue("three")
        // A repeat of the first request answers the first message and queues nothing.
        expect((yield* queue("one again", "k-1")).messageId).toBe(first.messageId)
        const waiting = yield* ask<SessionHealthView>(new GetHealth({ sessionId }))
        expect(waiting.messageQueue.pending).toBe(3)
        expect(waiting.messageQueue.oldestQueuedAt).not.toBeNull()
        expect(yield* network.sent(sessionId)).toEqual([])

        yield* link(sessionId)
        const view = yield* until(handle, (v) => v.metrics.messagesSent === 3)
        expect(view.status).toBe("connected")
        expect((yield* network.sent(sessionId)).map((m) => m.text)).toEqual(["one", "two", "three"])
        const drained = yield* ask<SessionHealthView>(new GetHealth({ sessionId }))
        expect(drained.messageQueue).toMatchObject({ pending: 0, oldestQueuedAt: null, oldestAgeSeconds: null })
        expect(drained.lastActivityAt).not.toBeNull()
      }))

    it.scoped("fails texts that waited longer than OUTBOX_MAX_AGE instead of sending them late", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        // The session's clock is two hours ahead of Postgres, which stamps queued texts with the real time.
        yield* TestClock.setTime(Date.now() + Duration.toMillis(Duration.hours(2)))
        const { handle, sessionId } = yield* start(3, 10, { ...options, queueMaxAge: Duration.hours(1) })
        const reply = yield* handle.offer(
          new QueueText({ sessionId, to: "628999000111@s.whatsapp.net", text: "stale", idempotencyKey: null })
        ).pipe(Effect.orDie)
        const accepted = (yield* Effect.orDie(Deferred.await(reply))) as AcceptedMessage
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        const sql = yield* SqlClient.SqlClient
        for (let i = 0; i < 100; i++) {
          const rows = yield* sql<{ status: string; error: string | null }>`SELECT status, error FROM messages
            WHERE id = ${accepted.messageId}`.pipe(Effect.orDie)
          if (rows[0]?.status === "failed") {
            expect(rows[0].error).toContain("not sent within 1h")
            expect(yield* network.sent(sessionId)).toEqual([])
            return
          }
          yield* settle
        }
        return yield* Effect.dieMessage("the stale text never failed")
      }))

    it.scoped("resends a text under the WhatsApp id of its first attempt (a previous owner's, say)", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const outbox = yield* Outbox
        const fence = { shard: ShardNumber.make(2), epoch: 10 }
        const session = yield* seedSession({ shard: 2 })
        yield* (yield* ShardFences).advance(2, 10)
        // A previous owner chose the id, and may or may not have sent it, before it died.
        const queued = yield* outbox.enqueue(fence, {
          id: MessageId.make("msg_00000000000000000001"),
          sessionId: session.id,
          remoteJid: "628999000111@s.whatsapp.net",
          text: "half sent"
        })
        yield* outbox.assignWaMessageId(fence, queued.messageId, "3EB0FROMBEFORE")
        // Whatever time the (shared) test clock shows, the text is not too old to send.
        const actor = yield* SessionActor.make(session.id, fence, { ...options, queueMaxAge: Duration.days(3650) })
        yield* Effect.forkScoped(actor.run)
        yield* link(session.id)
        yield* until(actor.handle, (v) => v.metrics.messagesSent === 1)
        expect(yield* network.sent(session.id)).toEqual([
          { waMessageId: "3EB0FROMBEFORE", to: "628999000111@s.whatsapp.net", text: "half sent" }
        ])
      }))

    it.scoped("refuses to send while not connected, and sends and counts once connected", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const { handle, sessionId } = yield* start()
        const early = yield* handle.offer(new SendText({ sessionId, to: "628999000111", text: "hi" })).pipe(
          Effect.orDie,
          Effect.flatMap((reply) => Effect.flip(Deferred.await(reply)))
        )
        expect(early._tag).toBe("NotConnected")
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        const reply = yield* handle.offer(new SendText({ sessionId, to: "628999000111", text: "hi" })).pipe(
          Effect.orDie
        )
        const sent = (yield* Deferred.await(reply)) as SentText
        expect(sent.messageId).toMatch(/^msg_/)
        expect((yield* network.sent(sessionId)).map((m) => m.text)).toEqual(["hi"])
        const view = yield* until(handle, (v) => v.metrics.messagesSent === 1)
        expect(view.metrics.messagesReceived).toBe(0)
      }))

    it.scoped("connects through a node-wide gate: a second socket waits until the first shows its first event", () =>
      Effect.gen(function*() {
        const driver = yield* WhatsAppDriver
        const hold = yield* Deferred.make<void>()
        const connects: Array<string> = []
        const first = yield* seedSession({ shard: 7 })
        const second = yield* seedSession({ shard: 7 })
        yield* (yield* ShardFences).advance(7, 1)
        const gated = WhatsAppDriver.of({
          ...driver,
          // The first session's handshake hangs until `hold` is released.
          connect: (connectOptions) =>
            Effect.sync(() => connects.push(connectOptions.sessionId)).pipe(
              Effect.zipRight(connectOptions.sessionId === first.id ? Deferred.await(hold) : Effect.void),
              Effect.zipRight(driver.connect(connectOptions))
            )
        })
        const fence = { shard: ShardNumber.make(7), epoch: 1 }
        const gateOfOne = { ...options, connectGate: yield* ConnectGate.make(1) }
        const a = yield* SessionActor.make(first.id, fence, gateOfOne).pipe(
          Effect.provideService(WhatsAppDriver, gated)
        )
        const b = yield* SessionActor.make(second.id, fence, gateOfOne).pipe(
          Effect.provideService(WhatsAppDriver, gated)
        )
        yield* Effect.forkScoped(a.run)
        yield* until(a.handle, () => connects.length === 1)
        yield* Effect.forkScoped(b.run)
        yield* settle
        yield* settle
        expect(connects).toEqual([first.id])
        yield* Deferred.succeed(hold, undefined)
        yield* qrOf(first.id)
        yield* qrOf(second.id)
        expect(connects).toEqual([first.id, second.id])
      }))

    it.scoped("counts inbound messages", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const { handle, sessionId } = yield* start()
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        yield* network.receive(sessionId, "628999000111@s.whatsapp.net", "hello")
        yield* network.receive(sessionId, "628999000111@s.whatsapp.net", "again")
        const view = yield* until(handle, (v) => v.metrics.messagesReceived === 2)
        expect(view.metrics.messagesSent).toBe(0)
      }))

    it.scoped("stops when another node has fenced the shard, and answers queued commands 'not owner'", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const { fiber, handle, sessionId } = yield* start(3, 10)
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        yield* (yield* ShardFences).advance(3, 11)
        // The next state change must be written with the old epoch, which is rejected.
        yield* network.drop(sessionId)
        const exit = yield* Fiber.await(fiber)
        expect(Exit.isFailure(exit)).toBe(true)
        expect(String(exit)).toContain("StaleEpoch")
        const saved = Option.getOrThrow(yield* (yield* SessionRuntime).load(sessionId))
        expect(saved.status).toBe("connected")
        const refused = yield* Effect.flip(handle.offer(new GetStatus({ sessionId })))
        expect(refused._tag).toBe("NotOwner")
      }))

    it.scoped("refuses commands beyond its mailbox with 'busy' instead of queueing without bound", () =>
      Effect.gen(function*() {
        const session = yield* seedSession({ shard: 5 })
        yield* (yield* ShardFences).advance(5, 1)
        // Built but not run: nothing drains the mailbox.
        const actor = yield* SessionActor.make(session.id, { shard: ShardNumber.make(5), epoch: 1 }, {
          ...options,
          mailboxCapacity: 2
        })
        const command = new GetStatus({ sessionId: session.id })
        yield* actor.handle.offer(command)
        yield* actor.handle.offer(command)
        const third = yield* Effect.flip(actor.handle.offer(command))
        expect(third._tag).toBe("SessionBusy")
      }))

    it.scoped("Stop closes the socket and keeps the session closed, however long, until a Reconnect resumes it", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const { handle, sessionId } = yield* start(20)
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        const stopped = (yield* ask(handle, new StopSession({ sessionId }))) as SessionStatusView
        expect(stopped.status).toBe("disconnected")
        expect(yield* network.liveSockets).toBe(0)
        const saved = yield* (yield* SessionRuntime).load(sessionId)
        expect(Option.map(saved, (r) => [r.status, r.reason])).toEqual(Option.some(["disconnected", "stopped"]))
        // No backoff, no park brings it back.
        yield* TestClock.adjust("1 hour")
        yield* settle
        expect(yield* network.liveSockets).toBe(0)
        expect((yield* status(handle)).status).toBe("disconnected")
        // Stopping a stopped session is no error.
        expect(((yield* ask(handle, new StopSession({ sessionId }))) as SessionStatusView).status).toBe("disconnected")
        // Reconnect logs in with the same link: no QR code.
        yield* ask(handle, new Reconnect({ sessionId }))
        yield* until(handle, (v) => v.status === "connected")
        expect(yield* network.liveSockets).toBe(1)
      }))

    it.scoped("a session whose tenant stopped it starts without connecting, and connects once reconnected", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const session = yield* seedSession({ shard: 21 })
        yield* (yield* Sessions).setDesiredState(session.id, "stopped")
        yield* (yield* ShardFences).advance(21, 1)
        const actor = yield* SessionActor.make(session.id, { shard: ShardNumber.make(21), epoch: 1 }, options)
        yield* Effect.forkScoped(actor.run)
        const view = yield* until(actor.handle, (v) => v.status === "disconnected")
        expect(view.connectedAt).toBeNull()
        yield* settle
        expect(yield* network.liveSockets).toBe(0)
        yield* ask(actor.handle, new Reconnect({ sessionId: session.id }))
        // Never linked: it shows a QR code.
        expect(yield* qrOf(session.id)).toBeTypeOf("string")
      }))

    it.scoped("Unlink logs a connected device out, wipes its link and ends the actor", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const { fiber, handle, sessionId } = yield* start(22)
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        const unlinked = (yield* ask(handle, new UnlinkSession({ sessionId }))) as Unlinked
        expect(unlinked).toMatchObject({ sessionId, deviceUnlinked: true, detail: null })
        const exit = yield* Fiber.await(fiber)
        expect(String(exit)).toContain("Unlinked")
        expect(yield* network.liveSockets).toBe(0)
        expect(Exit.isFailure(yield* Effect.exit(handle.offer(new GetStatus({ sessionId }))))).toBe(true)
        // The link is gone: the same session started again would need a new scan.
        const again = yield* SessionActor.make(sessionId, { shard: ShardNumber.make(22), epoch: 10 }, options)
        yield* Effect.forkScoped(again.run)
        expect(yield* qrOf(sessionId)).toBeTypeOf("string")
      }))

    it.scoped("Unlink of a stopped session logs in once with its saved link to log it out", () =>
      Effect.gen(function*() {
        const network = yield* InProcessWhatsApp
        const { fiber, handle, sessionId } = yield* start(23)
        yield* link(sessionId)
        yield* until(handle, (v) => v.status === "connected")
        yield* ask(handle, new StopSession({ sessionId }))
        expect(yield* network.liveSockets).toBe(0)
        const unlinked = (yield* ask(handle, new UnlinkSession({ sessionId }))) as Unlinked
        expect(unlinked.deviceUnlinked).toBe(true)
        yield* Fiber.await(fiber)
        expect(yield* network.liveSockets).toBe(0)
      }))

    it.scoped("Unlink of a session that was never linked says so", () =>
      Effect.gen(function*() {
        const { handle, sessionId } = yield* start(24)
        yield* qrOf(sessionId)
        const unlinked = (yield* ask(handle, new UnlinkSession({ sessionId }))) as Unlinked
        expect(unlinked.deviceUnlinked).toBe(false)
        expect(unlinked.detail).toContain("not linked")
      }))
  })
})
