import { describe, expect, it } from "@effect/vitest"
import { SessionId } from "@wacluster/domain/Ids"
import { ShardNumber } from "@wacluster/domain/Shard"
import { Chunk, Effect, Fiber, Option, Stream, TestClock } from "effect"
import * as InProcessDriver from "../src/InProcessDriver.js"
import { InProcessWhatsApp } from "../src/InProcessDriver.js"
import { WhatsAppDriver } from "../src/WhatsAppDriver.js"

const sessionId = SessionId.make("sess_inProcessTest0000000")
const layer = InProcessDriver.layer({ firstQrTimeout: "60 seconds", qrTimeout: "20 seconds", qrAttempts: 2 })
const connect = Effect.flatMap(
  WhatsAppDriver,
  (driver) => driver.connect({ sessionId, fence: { shard: ShardNumber.make(0), epoch: 1 } })
)

describe("InProcessDriver", () => {
  it.scoped("shows QR codes in the WhatsApp format, then closes with qr_timeout", () =>
    Effect.gen(function*() {
      const socket = yield* connect
      const events = yield* Effect.fork(Stream.runCollect(socket.events))
      yield* TestClock.adjust("60 seconds")
      yield* TestClock.adjust("20 seconds")
      const seen = Chunk.toArray(yield* Fiber.join(events))
      expect(seen.map((e) => e._tag)).toEqual(["Qr", "Qr", "Closed"])
      const first = seen[0]
      if (first?._tag === "Qr") expect(first.qr.split(",")).toHaveLength(4)
      const last = seen[2]
      if (last?._tag === "Closed") expect(last.reason).toBe("qr_timeout")
    }).pipe(Effect.provide(layer)))

  it.scoped("links on a scan of the current QR code and refuses an unknown one", () =>
    Effect.gen(function*() {
      const network = yield* InProcessWhatsApp
      const socket = yield* connect
      const events = yield* Effect.fork(Stream.runCollect(socket.events))
      yield* Effect.yieldNow()
      const refused = yield* Effect.flip(network.scan("not,a,real,code", "628123"))
      expect(refused.operation).toBe("scan")
      const qr = Option.getOrThrow(yield* network.currentQr(sessionId))
      expect((yield* network.scan(qr, "628123")).jid).toBe("628123@s.whatsapp.net")
      const closed = Chunk.toArray(yield* Fiber.join(events)).at(-1)
      expect(closed?._tag === "Closed" && closed.reason).toBe("restart_required")
      // Reconnecting with the new credentials opens without a QR.
      const again = yield* connect
      const first = yield* Stream.runHead(again.events)
      expect(Option.map(first, (e) => e._tag)).toEqual(Option.some("Open"))
    }).pipe(Effect.provide(layer)))

  it.scoped("keeps one socket per device: a second login closes the first with a conflict", () =>
    Effect.gen(function*() {
      const network = yield* InProcessWhatsApp
      const first = yield* connect
      const events = yield* Effect.fork(Stream.runCollect(first.events))
      yield* Effect.yieldNow()
      yield* connect
      const last = Chunk.toArray(yield* Fiber.join(events)).at(-1)
      expect(last?._tag === "Closed" && last.reason).toBe("conflict")
      expect(yield* network.liveSockets).toBe(1)
    }).pipe(Effect.provide(layer)))

  it.scoped("refuses to send before the device is linked, and sends after", () =>
    Effect.gen(function*() {
      const network = yield* InProcessWhatsApp
      const socket = yield* connect
      yield* Effect.yieldNow()
      const refused = yield* Effect.flip(socket.sendText("628999@s.whatsapp.net", "hi"))
      expect(refused.message).toContain("not connected")
      const code = yield* socket.requestPairingCode("628123456789")
      expect(code).toMatch(/^[A-Z0-9]{8}$/)
      expect((yield* Effect.flip(socket.requestPairingCode("not a number"))).operation).toBe("requestPairingCode")

      yield* network.scan(Option.getOrThrow(yield* network.currentQr(sessionId)), "628123")
      const linked = yield* connect
      const { waMessageId } = yield* linked.sendText("628999@s.whatsapp.net", "hello")
      expect((yield* network.sent(sessionId)).map((m) => [m.waMessageId, m.text])).toEqual([[waMessageId, "hello"]])
    }).pipe(Effect.provide(layer)))

  it.scoped("a logout from the phone forgets the device: the next connect shows a QR again", () =>
    Effect.gen(function*() {
      const network = yield* InProcessWhatsApp
      const socket = yield* connect
      yield* Effect.yieldNow()
      yield* network.scan(Option.getOrThrow(yield* network.currentQr(sessionId)), "628123")
      const linked = yield* connect
      const events = yield* Effect.fork(Stream.runCollect(linked.events))
      yield* Effect.yieldNow()
      yield* network.logoutFromPhone(sessionId)
      const seen = Chunk.toArray(yield* Fiber.join(events)).map((e) => e._tag === "Closed" ? e.reason : e._tag)
      expect(seen).toEqual(["Open", "logged_out"])
      const fresh = yield* connect
      const first = yield* Stream.runHead(fresh.events)
      expect(Option.map(first, (e) => e._tag)).toEqual(Option.some("Qr"))
      expect(socket).toBeDefined()
    }).pipe(Effect.provide(layer)))
})
