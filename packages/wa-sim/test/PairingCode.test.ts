import { describe, expect, it } from "@effect/vitest"
import { DisconnectReason } from "@whiskeysockets/baileys"
import { Chunk, Effect, Queue, Schedule } from "effect"
import * as WaSim from "../src/WaSim.js"
import {
  type Client,
  connect,
  makeAuth,
  trustSim,
  waitFor,
  waitForClose,
  waitForOpen,
  waitForQr
} from "./BaileysClient.js"
import { request } from "./Control.js"

const phoneNumber = "15551230004"

const startSim = (options: WaSim.WaSimOptions = {}) =>
  Effect.tap(WaSim.make(options), (sim) => Effect.sync(() => trustSim(sim.rootPublicKey)))

/** What a person does on the companion: wait for the connection (its first QR), then ask for a code instead. */
const requestCode = (client: Client, phone: string) =>
  Effect.flatMap(
    waitForQr(client),
    (qr) => Effect.map(Effect.promise(() => client.socket.requestPairingCode(phone)), (code) => ({ qr, code }))
  )

/** `requestPairingCode` resolves once its iq is written; the sim has it a moment later. */
const awaitPendingPairing = (sim: WaSim.WaSim, phone: string) =>
  sim.pendingPairings.pipe(
    Effect.filterOrFail(
      (pending) => pending.some((pairing) => pairing.phoneNumber === phone),
      () => new Error(`no pending pairing for ${phone}`)
    ),
    Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 100 })
  )

/** How a person types it: lowercase, with the dash the phone shows. */
const typed = (code: string) => `${code.slice(0, 4)}-${code.slice(4)}`.toLowerCase()

/** A valid code that is not `code`. */
const otherCode = (code: string) => `${code.slice(0, 7)}${code.endsWith("A") ? "B" : "A"}`

const errorCode = (body: unknown): unknown =>
  typeof body === "object" && body !== null && "error" in body && typeof body.error === "object" && body.error
    ? ("code" in body.error ? body.error.code : undefined)
    : undefined

/** Opens a socket with linked creds and fails if the client is asked for a QR code on the way to `open`. */
const loginWithoutQr = (client: Client) =>
  waitFor(
    client.updates,
    "open or a QR code",
    (update) => typeof update.qr === "string" || update.connection === "open"
  )
    .pipe(Effect.map((update) => update.connection))

describe("WaSim pairing code", () => {
  it.scopedLive("links by phone number: the code typed on the phone, pair-success, 515, then a login as it", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const auth = makeAuth()
      const first = yield* connect(sim.url, auth)
      const { code } = yield* requestCode(first, phoneNumber)
      expect(code).toMatch(/^[1-9A-HJ-NP-TV-Z]{8}$/)
      expect(auth.creds.me?.id).toBe(`${phoneNumber}@s.whatsapp.net`)
      yield* awaitPendingPairing(sim, phoneNumber)
      const listed = yield* request(sim.controlUrl, "GET", "/pairing")
      expect(listed.status).toBe(200)
      expect(listed.body).toEqual([
        {
          ref: expect.stringMatching(/^2@/),
          phoneNumber,
          requestedAt: expect.any(Number),
          expiresAt: expect.any(Number)
        }
      ])

      const entered = yield* request(sim.controlUrl, "POST", "/pairing", { phoneNumber, code: typed(code) })
      expect(entered).toEqual({ status: 200, body: { jid: `${phoneNumber}:1@s.whatsapp.net` } })
      expect(yield* waitForClose(first)).toBe(DisconnectReason.restartRequired)
      expect((yield* request(sim.controlUrl, "GET", "/pairing")).body).toEqual([])
      expect((yield* request(sim.controlUrl, "GET", "/qr")).body).toEqual([])

      yield* Effect.scoped(Effect.gen(function*() {
        const second = yield* connect(sim.url, auth)
        expect(yield* loginWithoutQr(second)).toBe("open")
        expect(auth.creds.me?.id).toBe(`${phoneNumber}:1@s.whatsapp.net`)
        expect(auth.creds.me?.lid).toMatch(/^\d+:1@lid$/)
        expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 1, overlaps: 0 })
      }))

      // Later, on a fresh socket with the same creds: a plain login, no QR and no code.
      const later = yield* connect(sim.url, auth)
      expect(yield* loginWithoutQr(later)).toBe("open")
      expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 1, overlaps: 0 })
      expect((yield* request(sim.controlUrl, "GET", "/devices")).body).toEqual([
        expect.objectContaining({ jid: `${phoneNumber}:1@s.whatsapp.net`, phoneNumber, live: true })
      ])
    }))

  it.scopedLive("a wrong code links nothing (409): the client keeps waiting, and the right code still works", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const auth = makeAuth()
      const client = yield* connect(sim.url, auth)
      const { code } = yield* requestCode(client, phoneNumber)
      yield* awaitPendingPairing(sim, phoneNumber)

      const wrong = yield* request(sim.controlUrl, "POST", "/pairing", { phoneNumber, code: otherCode(code) })
      expect([wrong.status, errorCode(wrong.body)]).toEqual([409, "wrong_pairing_code"])
      expect(yield* sim.stats).toEqual({ devices: 0, liveSockets: 0, overlaps: 0 })
      expect((yield* request(sim.controlUrl, "GET", "/devices")).body).toEqual([])
      expect(yield* sim.pendingPairings).toEqual([expect.objectContaining({ phoneNumber })])
      // No pair-success reached the client: it is still the bare phone number requestPairingCode set, and connected.
      yield* Effect.sleep("200 millis")
      expect(auth.creds.me?.id).toBe(`${phoneNumber}@s.whatsapp.net`)
      const seen = Chunk.toReadonlyArray(yield* Queue.takeAll(client.updates))
      expect(seen.filter((update) => update.connection === "close" || update.isNewLogin)).toEqual([])
      // As against WhatsApp, the accepted companion_finish is enough for Baileys to mark itself registered.
      expect(auth.creds.registered).toBe(true)

      const right = yield* request(sim.controlUrl, "POST", "/pairing", { phoneNumber, code })
      expect(right).toEqual({ status: 200, body: { jid: `${phoneNumber}:1@s.whatsapp.net` } })
      expect(yield* waitForClose(client)).toBe(DisconnectReason.restartRequired)
      yield* Effect.flatMap(connect(sim.url, auth), waitForOpen)
      expect(auth.creds.me?.id).toBe(`${phoneNumber}:1@s.whatsapp.net`)
      expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 1, overlaps: 0 })
    }))

  it.scopedLive("the code goes to the newest client that asked for that number; the other one keeps waiting", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const olderAuth = makeAuth()
      const older = yield* connect(sim.url, olderAuth)
      yield* requestCode(older, phoneNumber)
      yield* awaitPendingPairing(sim, phoneNumber)
      const newerAuth = makeAuth()
      const newer = yield* connect(sim.url, newerAuth)
      const { code } = yield* requestCode(newer, phoneNumber)
      yield* sim.pendingPairings.pipe(
        Effect.filterOrFail((pending) => pending.length === 2, () => new Error("the second request is not there yet")),
        Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 100 })
      )

      expect(yield* sim.enterCode(phoneNumber, code)).toEqual({ jid: `${phoneNumber}:1@s.whatsapp.net` })
      expect(yield* waitForClose(newer)).toBe(DisconnectReason.restartRequired)
      expect(yield* sim.pendingPairings).toEqual([expect.objectContaining({ phoneNumber })])
      expect(olderAuth.creds.me?.id).toBe(`${phoneNumber}@s.whatsapp.net`)
      expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 0, overlaps: 0 })
    }))

  it.scopedLive("a client that asked for a code can still be linked by a QR scan, which ends the request", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const auth = makeAuth()
      const client = yield* connect(sim.url, auth)
      const { code, qr } = yield* requestCode(client, phoneNumber)
      yield* awaitPendingPairing(sim, phoneNumber)
      const scanned = yield* request(sim.controlUrl, "POST", "/scan", { qr, phoneNumber })
      expect(scanned).toEqual({ status: 200, body: { jid: `${phoneNumber}:1@s.whatsapp.net` } })
      expect(yield* sim.pendingPairings).toEqual([])
      const late = yield* request(sim.controlUrl, "POST", "/pairing", { phoneNumber, code })
      expect([late.status, errorCode(late.body)]).toEqual([404, "pairing_not_found"])
      expect(yield* waitForClose(client)).toBe(DisconnectReason.restartRequired)
    }))
})
