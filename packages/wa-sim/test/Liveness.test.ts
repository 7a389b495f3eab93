/**
 * Invariant 1 as the sim counts it: an overlap is a moment when two sockets of one device could both act, i.e. the
 * older socket answered within `livenessProbeMs` of the newer one's login. The older client runs in a child process
 * so it can be frozen with SIGSTOP, exactly what the cluster's chaos test does to a node past its lease.
 */
import { describe, expect, it } from "@effect/vitest"
import { DisconnectReason } from "@whiskeysockets/baileys"
import { Effect, Queue, Schedule } from "effect"
import * as WaSim from "../src/WaSim.js"
import { type Client, connect, trustSim, waitForOpen } from "./BaileysClient.js"
import * as ClientProcess from "./ClientProcess.js"
import { linkDevice, request } from "./Control.js"

const phoneNumber = "15551230005"
const contact = "4915112345679"

const startSim = (options: WaSim.WaSimOptions = {}) =>
  Effect.tap(WaSim.make(options), (sim) => Effect.sync(() => trustSim(sim.rootPublicKey)))

/** The client never heard its connection close. */
const neverClosed = (client: Client) =>
  Effect.map(Queue.takeAll(client.updates), (updates) => {
    expect([...updates].filter((update) => update.connection === "close")).toEqual([])
  })

/** The newer socket still works (the client sends a text and the sim records it) and is the device's live one. */
const stillWorks = (sim: WaSim.WaSim, jid: string, client: Client) =>
  Effect.gen(function*() {
    yield* Effect.promise(() => client.socket.sendMessage(`${contact}@s.whatsapp.net`, { text: "still here" }))
    const sent = yield* sim.sentMessages(jid).pipe(
      Effect.filterOrFail((sent) => sent.length >= 1, () => new Error("the sim did not record the message")),
      Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 500 })
    )
    expect(sent).toEqual([expect.objectContaining({ text: "still here", phoneNumber: contact })])
    yield* neverClosed(client)
    expect(yield* sim.devices).toEqual([expect.objectContaining({ jid, live: true })])
  })

describe("WaSim overlaps and liveness", () => {
  it.scopedLive(
    "a login replacing a frozen peer is no overlap, is not held up by the probe, and survives the peer's death",
    () =>
      Effect.gen(function*() {
        // A probe longer than the newer client's 10 s wait for `open`: a login held up by the probe would fail.
        const sim = yield* startSim({ livenessProbeMs: 12_000 })
        const { auth, jid } = yield* linkDevice(sim, phoneNumber)
        const older = yield* ClientProcess.start(sim, auth)
        yield* older.waitForLine("open")
        yield* older.freeze

        const newer = yield* connect(sim.url, auth)
        yield* waitForOpen(newer)
        expect(yield* sim.devices).toEqual([expect.objectContaining({ jid, live: true })])
        expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 1, overlaps: 0 })

        // The frozen process dies; the kernel ends its TCP connection.
        yield* older.kill
        expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 1, overlaps: 0 })
        yield* stillWorks(sim, jid, newer)
      }),
    180_000
  )

  it.scopedLive(
    "a replaced peer that wakes up after the probe gets 440 and writes to its old socket: no overlap, no harm",
    () =>
      Effect.gen(function*() {
        const sim = yield* startSim({ livenessProbeMs: 1_500 })
        const { auth, jid } = yield* linkDevice(sim, phoneNumber)
        const older = yield* ClientProcess.start(sim, auth)
        yield* older.waitForLine("open")
        yield* older.freeze

        const newer = yield* connect(sim.url, auth)
        yield* waitForOpen(newer)
        // Waits for the probe, which the frozen peer cannot answer.
        expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 1, overlaps: 0 })

        yield* older.thaw
        // It reads the ping (and pongs), writes a stanza, then reads the conflict and closes.
        yield* older.waitForLine("sent")
        yield* older.waitForLine(`closed ${DisconnectReason.connectionReplaced}`)
        expect(yield* older.exited).toBe(0)
        expect(yield* sim.stats).toEqual({ devices: 1, liveSockets: 1, overlaps: 0 })
        yield* stillWorks(sim, jid, newer)
      }),
    180_000
  )

  it.scopedLive(
    "a peer frozen only briefly answers within the probe: an overlap, and /stats waits for the probe to say so",
    () =>
      Effect.gen(function*() {
        const sim = yield* startSim({ livenessProbeMs: 15_000 })
        const { auth } = yield* linkDevice(sim, phoneNumber)
        const older = yield* ClientProcess.start(sim, auth)
        yield* older.waitForLine("open")
        yield* older.freeze

        const newer = yield* connect(sim.url, auth)
        yield* waitForOpen(newer)
        yield* older.thaw
        // Read at once, when the thawed peer may not have answered yet: /stats waits for the probe.
        const stats = yield* request(sim.controlUrl, "GET", "/stats")
        expect(stats).toEqual({ status: 200, body: { devices: 1, liveSockets: 1, overlaps: 1 } })
        yield* older.waitForLine(`closed ${DisconnectReason.connectionReplaced}`)
        yield* neverClosed(newer)
      }),
    180_000
  )
})
