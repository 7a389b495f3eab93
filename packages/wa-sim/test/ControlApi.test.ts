import { describe, expect, it } from "@effect/vitest"
import { Curve } from "@whiskeysockets/baileys"
import { Effect, Schedule } from "effect"
import * as WaSim from "../src/WaSim.js"
import { connect, makeAuth, trustSim, waitForQr } from "./BaileysClient.js"
import { devicePath, linkDevice, request } from "./Control.js"

const phoneNumber = "15551230003"

const startSim = (options: WaSim.WaSimOptions = {}) =>
  Effect.tap(WaSim.make(options), (sim) => Effect.sync(() => trustSim(sim.rootPublicKey)))

const waitForPairings = (sim: WaSim.WaSim, count: number) =>
  sim.pendingPairings.pipe(
    Effect.filterOrFail((pending) => pending.length === count, () => new Error(`not ${count} pending pairings`)),
    Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 100 })
  )

const errorCode = (body: unknown): unknown =>
  typeof body === "object" && body !== null && "error" in body && typeof body.error === "object" && body.error
    ? ("code" in body.error ? body.error.code : undefined)
    : undefined

describe("WaSim control API", () => {
  it.scopedLive("answers health and stats, and names unknown routes with a 404 JSON error", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      expect(yield* request(sim.controlUrl, "GET", "/healthz")).toEqual({
        status: 200,
        body: { ok: true, waSimUrl: sim.url, rootPublicKey: sim.rootPublicKey }
      })
      expect(yield* request(sim.controlUrl, "GET", "/stats")).toEqual({
        status: 200,
        body: { devices: 0, liveSockets: 0, overlaps: 0 }
      })
      const missing = yield* request(sim.controlUrl, "GET", "/nothing-here")
      expect(missing.status).toBe(404)
      expect(errorCode(missing.body)).toBe("not_found")
    }))

  it.scopedLive("rejects bad scans with 4xx: malformed body or QR, unknown ref, keys of another client", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const client = yield* connect(sim.url, makeAuth())
      const qr = yield* waitForQr(client)
      const scan = (body: unknown) => request(sim.controlUrl, "POST", "/scan", body)

      const notJson = yield* scan("{not json")
      expect([notJson.status, errorCode(notJson.body)]).toEqual([400, "invalid_request"])
      const noPhone = yield* scan({ qr })
      expect([noPhone.status, errorCode(noPhone.body)]).toEqual([400, "invalid_request"])
      const badPhone = yield* scan({ qr, phoneNumber: "+1 555" })
      expect([badPhone.status, errorCode(badPhone.body)]).toEqual([400, "invalid_request"])
      const badQr = yield* scan({ qr: "hello", phoneNumber })
      expect([badQr.status, errorCode(badQr.body)]).toEqual([400, "invalid_request"])

      const [prefix = "", ...rest] = qr.split("#")
      const [ref = "", noise = "", identity = "", adv = "", platform = ""] = rest.join("#").split(",")
      const unknownRef = yield* scan({ qr: `${prefix}#2@unknown,${noise},${identity},${adv},${platform}`, phoneNumber })
      expect([unknownRef.status, errorCode(unknownRef.body)]).toEqual([404, "qr_not_found"])
      const otherKey = Buffer.from(Curve.generateKeyPair().public).toString("base64")
      const mismatch = yield* scan({ qr: `${prefix}#${ref},${otherKey},${identity},${adv},${platform}`, phoneNumber })
      expect([mismatch.status, errorCode(mismatch.body)]).toEqual([409, "qr_mismatch"])

      // Nothing above linked anything; the real code still works, once.
      expect((yield* scan({ qr, phoneNumber })).status).toBe(200)
      const twice = yield* scan({ qr, phoneNumber })
      expect([twice.status, errorCode(twice.body)]).toEqual([404, "qr_not_found"])
      expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 0, overlaps: 0 })
    }))

  it.scopedLive("a QR code can no longer be scanned once its time is up", () =>
    Effect.gen(function*() {
      const sim = yield* startSim({ qrTtlMs: 300 })
      const client = yield* connect(sim.url, makeAuth())
      const qr = yield* waitForQr(client)
      expect(yield* sim.pendingQrs).not.toEqual([])
      yield* Effect.sleep("400 millis")
      expect(yield* sim.pendingQrs).toEqual([])
      const late = yield* request(sim.controlUrl, "POST", "/scan", { qr, phoneNumber })
      expect([late.status, errorCode(late.body)]).toEqual([404, "qr_not_found"])
    }))

  it.scopedLive("rejects bad code entries: 400 malformed, 404 while no client waits for a code for that number", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const enter = (body: unknown) => request(sim.controlUrl, "POST", "/pairing", body)
      for (
        const body of [
          "{not json",
          { phoneNumber },
          { code: "ABCD-EFGH" },
          { phoneNumber: "+1 555", code: "ABCD-EFGH" },
          { phoneNumber, code: "ABC" },
          { phoneNumber, code: "ABCD-EFG!" }
        ]
      ) {
        const answer = yield* enter(body)
        expect([body, answer.status, errorCode(answer.body)]).toEqual([body, 400, "invalid_request"])
      }
      const nobody = yield* enter({ phoneNumber, code: "abcd-efgh" })
      expect([nobody.status, errorCode(nobody.body)]).toEqual([404, "pairing_not_found"])

      const client = yield* connect(sim.url, makeAuth())
      yield* waitForQr(client)
      const code = yield* Effect.promise(() => client.socket.requestPairingCode(phoneNumber))
      yield* waitForPairings(sim, 1)
      const otherNumber = yield* enter({ phoneNumber: "15559990000", code })
      expect([otherNumber.status, errorCode(otherNumber.body)]).toEqual([404, "pairing_not_found"])
      expect(yield* sim.stats).toEqual({ devices: 0, liveSockets: 0, overlaps: 0 })
    }))

  it.scopedLive("a pairing code request ends with the QR time to live, and with its connection", () =>
    Effect.gen(function*() {
      const sim = yield* startSim({ qrTtlMs: 500 })
      const expiring = yield* connect(sim.url, makeAuth())
      yield* waitForQr(expiring)
      const code = yield* Effect.promise(() => expiring.socket.requestPairingCode(phoneNumber))
      yield* waitForPairings(sim, 1)
      yield* Effect.sleep("600 millis")
      expect((yield* request(sim.controlUrl, "GET", "/pairing")).body).toEqual([])
      const late = yield* request(sim.controlUrl, "POST", "/pairing", { phoneNumber, code })
      expect([late.status, errorCode(late.body)]).toEqual([404, "pairing_not_found"])

      // With the default time to live, only the closing connection can end the next request in time.
      const lasting = yield* startSim()
      const closing = yield* connect(lasting.url, makeAuth())
      yield* waitForQr(closing)
      const otherCode = yield* Effect.promise(() => closing.socket.requestPairingCode(phoneNumber))
      yield* waitForPairings(lasting, 1)
      yield* Effect.promise(() => closing.socket.end(undefined))
      yield* waitForPairings(lasting, 0)
      const gone = yield* request(lasting.controlUrl, "POST", "/pairing", { phoneNumber, code: otherCode })
      expect([gone.status, errorCode(gone.body)]).toEqual([404, "pairing_not_found"])
      expect(yield* lasting.stats).toEqual({ devices: 0, liveSockets: 0, overlaps: 0 })
    }))

  it.scopedLive("device actions answer 404 for unknown devices and say whether a socket was live", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      for (const action of ["logout", "conflict", "drop", "sent"]) {
        const method = action === "sent" ? "GET" : "POST"
        const answer = yield* request(sim.controlUrl, method, devicePath("15550000000:1@s.whatsapp.net", action))
        expect([action, answer.status, errorCode(answer.body)]).toEqual([action, 404, "device_not_found"])
      }
      const { jid } = yield* linkDevice(sim, phoneNumber)
      expect(yield* request(sim.controlUrl, "POST", devicePath(jid, "conflict"))).toEqual({
        status: 200,
        body: { live: false }
      })
      expect(yield* request(sim.controlUrl, "POST", devicePath(jid, "drop"))).toEqual({
        status: 200,
        body: { live: false }
      })
      const devices = yield* request(sim.controlUrl, "GET", "/devices")
      expect(devices.body).toEqual([expect.objectContaining({ jid, phoneNumber, live: false })])
    }))
})
