import { describe, expect, it } from "@effect/vitest"
import { DisconnectReason } from "@whiskeysockets/baileys"
import { Effect, Schedule } from "effect"
import { randomBytes } from "node:crypto"
import * as WaSim from "../src/WaSim.js"
import { connect, makeAuth, trustSim, waitFor, waitForClose, waitForOpen, waitForQr } from "./BaileysClient.js"
import { devicePath, linkDevice, request } from "./Control.js"

const phoneNumber = "15551230001"

const startSim = (options: WaSim.WaSimOptions = {}) =>
  Effect.tap(WaSim.make(options), (sim) => Effect.sync(() => trustSim(sim.rootPublicKey)))

describe("WaSim", () => {
  it.scopedLive("a client that trusts another root key refuses the server, even after it accepted the real one", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      // Accepted once (Baileys remembers a certificate it verified)…
      yield* waitForQr(yield* connect(sim.url, makeAuth()))
      // …which must not let the same certificate through under a root key that did not sign it.
      yield* Effect.acquireRelease(
        Effect.sync(() => trustSim(randomBytes(32).toString("hex"))),
        () => Effect.sync(() => trustSim(sim.rootPublicKey))
      )
      const refused = yield* connect(sim.url, makeAuth())
      const closed = yield* waitFor(refused.updates, "connection close", (update) => update.connection === "close")
      expect(closed.lastDisconnect?.error?.message).toMatch(/intermediate certificate signature invalid/)
      expect(refused.socket.authState.creds.me).toBeUndefined()
    }))

  it.scopedLive("links a new device by QR scan: pair-success, 515, then a login that opens as the scanned jid", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const auth = makeAuth()
      const first = yield* connect(sim.url, auth)
      const qr = yield* waitForQr(first)
      const pending = yield* request(sim.controlUrl, "GET", "/qr")
      expect(pending.status).toBe(200)
      const [ref, noise, identity] = qr.slice(qr.indexOf("#") + 1).split(",")
      expect(pending.body).toContainEqual(expect.objectContaining({ ref, qrPrefix: `${ref},${noise},${identity}` }))

      const scanned = yield* request(sim.controlUrl, "POST", "/scan", { qr, phoneNumber })
      expect(scanned.status).toBe(200)
      expect(scanned.body).toEqual({ jid: `${phoneNumber}:1@s.whatsapp.net` })
      expect(yield* waitForClose(first)).toBe(DisconnectReason.restartRequired)
      expect((yield* request(sim.controlUrl, "GET", "/qr")).body).toEqual([])

      const second = yield* connect(sim.url, auth)
      yield* waitForOpen(second)
      expect(auth.creds.me?.id).toBe(`${phoneNumber}:1@s.whatsapp.net`)
      expect(auth.creds.me?.lid).toMatch(/^\d+:1@lid$/)
      expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 1, overlaps: 0 })
      const devices = yield* request(sim.controlUrl, "GET", "/devices")
      expect(devices.body).toEqual([
        expect.objectContaining({ jid: `${phoneNumber}:1@s.whatsapp.net`, phoneNumber, live: true })
      ])
    }))

  it.scopedLive("a linked device logs in again on a fresh socket without a QR code, and the next link gets device 2", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const linked = yield* linkDevice(sim, phoneNumber)
      yield* Effect.scoped(Effect.flatMap(connect(sim.url, linked.auth), waitForOpen))
      const again = yield* connect(sim.url, linked.auth)
      yield* waitForOpen(again)
      expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 1, overlaps: 0 })
      const other = yield* linkDevice(sim, phoneNumber)
      expect(other.jid).toBe(`${phoneNumber}:2@s.whatsapp.net`)
      expect(yield* sim.stats).toEqual({ devices: 2, liveSockets: 1, overlaps: 0 })
    }))

  it.scopedLive("conflict closes the live socket with 440 and the device stays linked", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const { auth, jid } = yield* linkDevice(sim, phoneNumber)
      const client = yield* connect(sim.url, auth)
      yield* waitForOpen(client)
      const answer = yield* request(sim.controlUrl, "POST", devicePath(jid, "conflict"))
      expect(answer).toEqual({ status: 200, body: { live: true } })
      expect(yield* waitForClose(client)).toBe(DisconnectReason.connectionReplaced)
      expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 0, overlaps: 0 })
      yield* Effect.flatMap(connect(sim.url, auth), waitForOpen)
    }))

  it.scopedLive("logout closes the live socket with 401 and every later login gets 401", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const { auth, jid } = yield* linkDevice(sim, phoneNumber)
      const client = yield* connect(sim.url, auth)
      yield* waitForOpen(client)
      expect((yield* request(sim.controlUrl, "POST", devicePath(jid, "logout"))).status).toBe(200)
      expect(yield* waitForClose(client)).toBe(DisconnectReason.loggedOut)
      const later = yield* connect(sim.url, auth)
      expect(yield* waitForClose(later)).toBe(DisconnectReason.loggedOut)
      expect(yield* sim.stats).toEqual({ devices: 0, liveSockets: 0, overlaps: 0 })
      const again = yield* request(sim.controlUrl, "POST", devicePath(jid, "logout"))
      expect(again.status).toBe(404)
    }))

  it.scopedLive("drop cuts the TCP connection: Baileys closes with a reason other than logged out, and reconnects", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const { auth, jid } = yield* linkDevice(sim, phoneNumber)
      const client = yield* connect(sim.url, auth)
      yield* waitForOpen(client)
      expect(yield* request(sim.controlUrl, "POST", devicePath(jid, "drop"))).toEqual({
        status: 200,
        body: { live: true }
      })
      const code = yield* waitForClose(client)
      expect(code).toBe(DisconnectReason.connectionClosed)
      expect(yield* sim.stats).toMatchObject({ liveSockets: 0 })
      yield* Effect.flatMap(connect(sim.url, auth), waitForOpen)
      expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 1, overlaps: 0 })
    }))

  it.scopedLive("two sockets for one device: the overlap is counted once and the older socket gets 440", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const { auth } = yield* linkDevice(sim, phoneNumber)
      const older = yield* connect(sim.url, auth)
      yield* waitForOpen(older)
      const newer = yield* connect(sim.url, auth)
      yield* waitForOpen(newer)
      expect(yield* waitForClose(older)).toBe(DisconnectReason.connectionReplaced)
      expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 1, overlaps: 1 })
      const stats = yield* request(sim.controlUrl, "GET", "/stats")
      expect(stats.body).toEqual({ devices: 1, liveSockets: 1, overlaps: 1 })
    }))

  it.scopedLive("a login from a device the sim does not know gets 401", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const auth = makeAuth()
      auth.creds.me = { id: `${phoneNumber}:7@s.whatsapp.net`, name: "stranger" }
      const client = yield* connect(sim.url, auth)
      expect(yield* waitForClose(client)).toBe(DisconnectReason.loggedOut)
      expect(yield* sim.stats).toEqual({ devices: 0, liveSockets: 0, overlaps: 0 })
    }))

  it.scopedLive("a login with the right jid but another noise key gets 401", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const { auth } = yield* linkDevice(sim, phoneNumber)
      const impostor = makeAuth()
      impostor.creds.me = { id: auth.creds.me?.id ?? "" }
      const client = yield* connect(sim.url, impostor)
      expect(yield* waitForClose(client)).toBe(DisconnectReason.loggedOut)
    }))

  it.scopedLive("a client that logs itself out unlinks its device", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const { auth } = yield* linkDevice(sim, phoneNumber)
      const client = yield* connect(sim.url, auth)
      yield* waitForOpen(client)
      yield* Effect.promise(() => client.socket.logout())
      expect(yield* waitForClose(client)).toBe(DisconnectReason.loggedOut)
      // The client closes right after sending its last iq; the sim handles what it received before the close.
      const stats = yield* sim.stats.pipe(
        Effect.filterOrFail((current) => current.devices === 0, () => new Error("the device is still linked")),
        Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 100 })
      )
      expect(stats).toEqual({ devices: 0, liveSockets: 0, overlaps: 0 })
      const later = yield* connect(sim.url, auth)
      expect(yield* waitForClose(later)).toBe(DisconnectReason.loggedOut)
    }))

  it.scopedLive("a connection that goes silent is cut like a lost TCP connection and is no longer live", () =>
    Effect.gen(function*() {
      const sim = yield* startSim({ idleTimeoutMs: 2_000 })
      const { auth } = yield* linkDevice(sim, phoneNumber)
      const client = yield* connect(sim.url, auth)
      yield* waitForOpen(client)
      expect(yield* waitForClose(client)).toBe(DisconnectReason.connectionClosed)
      expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 0, overlaps: 0 })
    }))
})
