/**
 * The Baileys driver against wa-sim: real Baileys, a real WhatsApp Web server, real Postgres for auth state. Each
 * test drives the phone through the simulator and checks the events the session actor would see.
 */
import { expect, layer } from "@effect/vitest"
import { findCity } from "@wacluster/domain/Cities"
import type { SessionId } from "@wacluster/domain/Ids"
import { ShardNumber } from "@wacluster/domain/Shard"
import { AuthState } from "@wacluster/store/AuthState"
import { ShardFences } from "@wacluster/store/ShardFences"
import { seedSession, storeLayer } from "@wacluster/store/test/support"
import * as ProxyServer from "@wacluster/test/ProxyServer"
import * as WaSim from "@wacluster/wa-sim/WaSim"
import { Duration, Effect, Exit, Layer, Option, Queue, Redacted, Schedule, Scope, Stream } from "effect"
import * as BaileysDriver from "../src/BaileysDriver.js"
import { ProxyConfig } from "../src/ProxyConfig.js"
import * as SessionProxy from "../src/SessionProxy.js"
import { type SocketEvent, WhatsAppDriver } from "../src/WhatsAppDriver.js"

const SimLive = WaSim.layer({ qrRefs: 3 })

const DriverLive = Layer.unwrapEffect(Effect.map(WaSim.WaSim, (sim) =>
  BaileysDriver.layer({
    websocketUrl: sim.url,
    rootPublicKey: Option.some(Redacted.make(sim.rootPublicKey)),
    connectTimeout: Duration.seconds(5),
    keepAlive: Duration.seconds(30),
    qrTimeout: Option.some(Duration.seconds(1)),
    authFlushEvery: Duration.millis(200),
    sendAckTimeout: Duration.seconds(2),
    logLevel: "error",
    preKeyThreads: 1
  })))

const TestLayer = DriverLive.pipe(Layer.provideMerge(SimLive), Layer.provideMerge(storeLayer("baileys_driver")))

/** A connected socket's events, read into a queue so a test can wait for the next one of a kind. */
const open = (sessionId: SessionId, shard: number, proxy?: SessionProxy.SessionProxy) =>
  Effect.gen(function*() {
    const driver = yield* WhatsAppDriver
    const socket = yield* driver.connect({ sessionId, fence: { shard: ShardNumber.make(shard), epoch: 1 }, proxy })
    const events = yield* Queue.unbounded<SocketEvent>()
    yield* socket.events.pipe(Stream.runForEach((event) => Queue.offer(events, event)), Effect.forkScoped)
    const next = <T extends SocketEvent["_tag"]>(tag: T) =>
      Effect.gen(function*() {
        while (true) {
          const event = yield* Queue.take(events)
          if (event._tag === tag) return event as Extract<SocketEvent, { _tag: T }>
          if (event._tag === "Closed" && tag !== "Closed") {
            return yield* Effect.dieMessage(`closed (${event.reason}: ${event.detail}) while waiting for ${tag}`)
          }
        }
      }).pipe(
        Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error(`no ${tag} event`) }),
        Effect.orDie
      )
    return { socket, next }
  })

/** Links a new session: QR → scan → restart required → a second socket that opens. */
const linked = (shard: number, phone: string) =>
  Effect.gen(function*() {
    const sim = yield* WaSim.WaSim
    const session = yield* seedSession({ shard })
    yield* (yield* ShardFences).advance(shard, 1)
    const jid = yield* Effect.scoped(Effect.gen(function*() {
      const first = yield* open(session.id, shard)
      const qr = yield* first.next("Qr")
      const { jid } = yield* sim.scan(qr.qr, phone).pipe(Effect.orDie)
      const closed = yield* first.next("Closed")
      expect(closed.reason).toBe("restart_required")
      return jid
    }))
    return { sessionId: session.id, jid }
  })

layer(TestLayer, { timeout: 120_000, excludeTestServices: true })("BaileysDriver against wa-sim", (it) => {
  it.scoped("links by QR, then logs in again from Postgres without a QR", () =>
    Effect.gen(function*() {
      const sim = yield* WaSim.WaSim
      const { jid, sessionId } = yield* linked(11, "6281100000001")
      const again = yield* open(sessionId, 11)
      const opened = yield* again.next("Open")
      expect(opened.phoneNumber).toBe("6281100000001")
      expect(opened.jid.split(":")[0]).toBe("6281100000001")
      expect((yield* sim.stats).liveSockets).toBe(1)
      expect(jid).toContain("6281100000001")
    }))

  it.scoped("maps the phone's logout to logged_out, a replacing login to conflict, a drop to connection_lost", () =>
    Effect.gen(function*() {
      const sim = yield* WaSim.WaSim
      const { jid, sessionId } = yield* linked(12, "6281100000002")
      const dropScope = yield* Scope.make()
      const dropped = yield* open(sessionId, 12).pipe(Scope.extend(dropScope))
      yield* dropped.next("Open")
      yield* sim.drop(jid).pipe(Effect.orDie)
      expect((yield* dropped.next("Closed")).reason).toBe("connection_lost")
      yield* Scope.close(dropScope, Exit.void)

      const conflictScope = yield* Scope.make()
      const replaced = yield* open(sessionId, 12).pipe(Scope.extend(conflictScope))
      yield* replaced.next("Open")
      yield* sim.conflict(jid).pipe(Effect.orDie)
      expect((yield* replaced.next("Closed")).reason).toBe("conflict")
      yield* Scope.close(conflictScope, Exit.void)

      const last = yield* open(sessionId, 12)
      yield* last.next("Open")
      yield* sim.logout(jid).pipe(Effect.orDie)
      expect((yield* last.next("Closed")).reason).toBe("logged_out")
    }))

  it.scoped("expires with qr_timeout when no QR code is scanned", () =>
    Effect.gen(function*() {
      const session = yield* seedSession({ shard: 13 })
      yield* (yield* ShardFences).advance(13, 1)
      const socket = yield* open(session.id, 13)
      yield* socket.next("Qr")
      expect((yield* socket.next("Closed")).reason).toBe("qr_timeout")
    }))

  it.scoped("receives texts, sends texts the contact gets, and reports delivered and read receipts", () =>
    Effect.gen(function*() {
      const sim = yield* WaSim.WaSim
      const { jid, sessionId } = yield* linked(14, "6281100000004")
      const live = yield* open(sessionId, 14)
      yield* live.next("Open")
      yield* sim.sendText(jid, "628199900001", "hello from a contact").pipe(Effect.orDie)
      const received = yield* live.next("MessageReceived")
      expect(received.text).toBe("hello from a contact")
      expect(received.from).toContain("628199900001")

      const { waMessageId } = yield* live.socket.sendText("+628199900002", "hello contact").pipe(Effect.orDie)
      // The contact decrypts it on the simulator's side, a moment after WhatsApp took it.
      const sent = yield* sim.sentMessages(jid).pipe(
        Effect.orDie,
        Effect.filterOrFail((messages) => messages.length > 0),
        Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 200 }),
        Effect.orDie
      )
      expect(sent.map((m) => m.text)).toEqual(["hello contact"])
      yield* sim.receipt(jid, waMessageId, "delivered").pipe(Effect.orDie)
      expect(yield* live.next("Receipt")).toMatchObject({ waMessageId, status: "delivered" })
      yield* sim.receipt(jid, waMessageId, "read").pipe(Effect.orDie)
      expect(yield* live.next("Receipt")).toMatchObject({ waMessageId, status: "read" })
    }))

  it.scoped("a send WhatsApp never acknowledges fails instead of counting as sent", () =>
    Effect.gen(function*() {
      const sim = yield* WaSim.WaSim
      const { jid, sessionId } = yield* linked(17, "6281100000007")
      const live = yield* open(sessionId, 17)
      yield* live.next("Open")
      yield* live.socket.sendText("+628199900004", "hello").pipe(Effect.orDie)
      // The path to WhatsApp goes dead without closing: the next message is written to the socket and lost.
      expect(yield* sim.stall(jid).pipe(Effect.orDie)).toBe(true)
      const sent = yield* live.socket.sendText("+628199900004", "into the void").pipe(Effect.flip)
      expect(sent.message).toContain("did not acknowledge")
      expect((yield* sim.sentMessages(jid).pipe(Effect.orDie)).map((m) => m.text)).toEqual(["hello"])
    }))

  it.scoped("goes through the session's city proxy, and a stopped proxy closes as proxy_unreachable", () =>
    Effect.gen(function*() {
      const proxyServer = yield* ProxyServer.start({ kind: "socks5" })
      const city = Option.getOrThrow(findCity("sao-paulo"))
      const { sessionId } = yield* linked(15, "6281100000005")
      const proxy = yield* SessionProxy.make(
        ProxyConfig.make({
          template: `socks5://user-city-{city}-session-{sticky}:secret@127.0.0.1:${proxyServer.port}`
        }),
        { sessionId, city }
      )
      const first = yield* Effect.scoped(Effect.gen(function*() {
        const socket = yield* open(sessionId, 15, proxy)
        return yield* socket.next("Open")
      }))
      expect(first.phoneNumber).toBe("6281100000005")
      const seen = yield* proxyServer.seen
      expect(seen.map((s) => s.username)).toContain(`user-city-saopaulo-session-${yield* proxy.sticky}`)

      yield* proxyServer.stop
      const failing = yield* open(sessionId, 15, proxy)
      expect((yield* failing.next("Closed")).reason).toBe("proxy_unreachable")
      expect((yield* proxy.health).healthy).toBe(false)
    }))
})

/** Keys written back only once an hour: whatever is in Postgres right after a send was written by the send. */
const RareFlushLive = Layer.unwrapEffect(Effect.map(WaSim.WaSim, (sim) =>
  BaileysDriver.layer({
    websocketUrl: sim.url,
    rootPublicKey: Option.some(Redacted.make(sim.rootPublicKey)),
    connectTimeout: Duration.seconds(5),
    keepAlive: Duration.seconds(30),
    qrTimeout: Option.some(Duration.seconds(1)),
    authFlushEvery: Duration.hours(1),
    sendAckTimeout: Duration.seconds(2),
    logLevel: "error",
    preKeyThreads: 1
  })))

layer(
  RareFlushLive.pipe(Layer.provideMerge(SimLive), Layer.provideMerge(storeLayer("baileys_driver_flush"))),
  { timeout: 120_000, excludeTestServices: true }
)("BaileysDriver: a send is durable", (it) => {
  it.scoped("a text counts as sent only once the signal session it advanced is in Postgres", () =>
    Effect.gen(function*() {
      const store = yield* AuthState
      const { sessionId } = yield* linked(16, "6281100000006")
      const live = yield* open(sessionId, 16)
      yield* live.next("Open")
      const sessionsBefore = [...(yield* store.getAll(sessionId).pipe(Effect.orDie)).keys()]
        .filter((key) => key.startsWith("session/"))
      expect(sessionsBefore).toEqual([])
      yield* live.socket.sendText("+628199900003", "first words").pipe(Effect.orDie)
      // Not a second later, not at the next write-behind an hour away: already there when the send returned.
      const sessionsAfter = [...(yield* store.getAll(sessionId).pipe(Effect.orDie)).keys()]
        .filter((key) => key.startsWith("session/"))
      expect(sessionsAfter.length).toBeGreaterThan(0)
    }))
})
