import { describe, expect, it } from "@effect/vitest"
import { proto } from "@whiskeysockets/baileys"
import { Effect, Schedule } from "effect"
import * as WaSim from "../src/WaSim.js"
import { connect, trustSim, waitFor, waitForOpen } from "./BaileysClient.js"
import { devicePath, linkDevice, request } from "./Control.js"

const phoneNumber = "15551230002"
const contact = "4915112345678"

const linkedAndOpen = Effect.gen(function*() {
  const sim = yield* WaSim.make()
  trustSim(sim.rootPublicKey)
  const { auth, jid } = yield* linkDevice(sim, phoneNumber)
  const client = yield* connect(sim.url, auth)
  yield* waitForOpen(client)
  return { sim, auth, jid, client }
})

/** `sendMessage` resolves once the stanza is written, before the sim has read it: wait until it has. */
const sentCount = (sim: WaSim.WaSim, jid: string, count: number) =>
  sim.sentMessages(jid).pipe(
    Effect.filterOrFail((sent) => sent.length >= count, () => new Error(`the sim did not record ${count} messages`)),
    Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 250 })
  )

const idOf = (body: unknown): string => {
  if (typeof body === "object" && body !== null && "id" in body && typeof body.id === "string") return body.id
  throw new Error(`no id in ${JSON.stringify(body)}`)
}

describe("WaSim messaging", () => {
  it.scopedLive("delivers a contact's text to the client as an end-to-end encrypted message", () =>
    Effect.gen(function*() {
      const { client, jid, sim } = yield* linkedAndOpen
      const sent = yield* request(sim.controlUrl, "POST", devicePath(jid, "messages"), { from: contact, text: "hallo" })
      expect(sent.status).toBe(200)
      const id = idOf(sent.body)
      const received = yield* waitFor(client.messages, "the contact's message", (message) => message.key.id === id)
      expect(received.message?.conversation).toBe("hallo")
      expect(received.key.fromMe).toBe(false)
      expect(received.key.remoteJid).toBe(`${contact}@s.whatsapp.net`)
      expect(received.key.remoteJidAlt).toMatch(/^\d+@lid$/)

      // A second message rides the session the first one started (a `msg`, not another `pkmsg`).
      const second = idOf(
        (yield* request(sim.controlUrl, "POST", devicePath(jid, "messages"), {
          from: contact,
          text: "noch da?"
        })).body
      )
      const again = yield* waitFor(client.messages, "the second message", (message) => message.key.id === second)
      expect(again.message?.conversation).toBe("noch da?")
    }))

  it.scopedLive("records what the client sends, and turns the contact's receipts into delivered and read", () =>
    Effect.gen(function*() {
      const { client, jid, sim } = yield* linkedAndOpen
      const message = yield* Effect.promise(() =>
        client.socket.sendMessage(`${contact}@s.whatsapp.net`, { text: "hello from the cluster" })
      )
      const messageId = message?.key.id ?? ""
      // Baileys folds a receipt into its own not-yet-flushed upsert of the message; once that is out, receipts
      // arrive as `messages.update`.
      yield* waitFor(client.messages, "the client's own copy", (upserted) => upserted.key.id === messageId)
      yield* sentCount(sim, jid, 1)
      const sent = yield* request(sim.controlUrl, "GET", devicePath(jid, "sent"))
      expect(sent.body).toEqual([
        expect.objectContaining({
          id: messageId,
          to: `${contact}@s.whatsapp.net`,
          phoneNumber: contact,
          text: "hello from the cluster",
          status: "sent"
        })
      ])

      const delivered = yield* request(sim.controlUrl, "POST", devicePath(jid, "receipts"), {
        messageId,
        status: "delivered"
      })
      expect(delivered.status).toBe(200)
      const deliveryUpdate = yield* waitFor(
        client.messageUpdates,
        "the delivery receipt",
        (update) => update.key.id === messageId && update.update.status === proto.WebMessageInfo.Status.DELIVERY_ACK
      )
      expect(deliveryUpdate.key.fromMe).toBe(true)
      yield* request(sim.controlUrl, "POST", devicePath(jid, "receipts"), { messageId, status: "read" })
      yield* waitFor(
        client.messageUpdates,
        "the read receipt",
        (update) => update.key.id === messageId && update.update.status === proto.WebMessageInfo.Status.READ
      )
      expect((yield* request(sim.controlUrl, "GET", devicePath(jid, "sent"))).body).toEqual([
        expect.objectContaining({ id: messageId, status: "read" })
      ])
    }))

  it.scopedLive("records a note to self: a text the device sends to its own number reaches its phone", () =>
    Effect.gen(function*() {
      const { client, jid, sim } = yield* linkedAndOpen
      const message = yield* Effect.promise(() =>
        client.socket.sendMessage(`${phoneNumber}@s.whatsapp.net`, { text: "remember the milk" })
      )
      const sent = yield* sentCount(sim, jid, 1)
      expect(sent).toEqual([
        expect.objectContaining({
          id: message?.key.id,
          to: `${phoneNumber}@s.whatsapp.net`,
          phoneNumber,
          text: "remember the milk",
          status: "sent"
        })
      ])
    }))

  it.scopedLive("a conversation both ways: the contact writes first, the client answers on the same sessions", () =>
    Effect.gen(function*() {
      const { client, jid, sim } = yield* linkedAndOpen
      const inbound = idOf(
        (yield* request(sim.controlUrl, "POST", devicePath(jid, "messages"), {
          from: contact,
          text: "ping"
        })).body
      )
      yield* waitFor(client.messages, "ping", (message) => message.key.id === inbound)
      for (const text of ["pong", "pong again"]) {
        yield* Effect.promise(() => client.socket.sendMessage(`${contact}@s.whatsapp.net`, { text }))
      }
      const sent = yield* sentCount(sim, jid, 2)
      expect(sent.map((message) => message.text)).toEqual(["pong", "pong again"])
      const reply = idOf(
        (yield* request(sim.controlUrl, "POST", devicePath(jid, "messages"), {
          from: contact,
          text: "got both"
        })).body
      )
      const last = yield* waitFor(client.messages, "got both", (message) => message.key.id === reply)
      expect(last.message?.conversation).toBe("got both")
    }))

  it.scopedLive("holds messages for an offline device and delivers them at its next login", () =>
    Effect.gen(function*() {
      const sim = yield* WaSim.make()
      trustSim(sim.rootPublicKey)
      const { auth, jid } = yield* linkDevice(sim, phoneNumber)
      const { id } = yield* sim.sendText(jid, contact, "while you were away")
      const client = yield* connect(sim.url, auth)
      const received = yield* waitFor(client.messages, "the offline message", (message) => message.key.id === id)
      expect(received.message?.conversation).toBe("while you were away")
    }))

  it.scopedLive("rejects messaging requests for unknown devices and messages with 4xx errors", () =>
    Effect.gen(function*() {
      const { jid, sim } = yield* linkedAndOpen
      const unknownDevice = yield* request(sim.controlUrl, "POST", devicePath("1555:9@s.whatsapp.net", "messages"), {
        from: contact,
        text: "x"
      })
      expect(unknownDevice.status).toBe(404)
      expect(unknownDevice.body).toMatchObject({ error: { code: "device_not_found" } })
      const badSender = yield* request(sim.controlUrl, "POST", devicePath(jid, "messages"), { from: "+49", text: "x" })
      expect(badSender.status).toBe(400)
      const noText = yield* request(sim.controlUrl, "POST", devicePath(jid, "messages"), { from: contact })
      expect(noText.status).toBe(400)
      const unknownMessage = yield* request(sim.controlUrl, "POST", devicePath(jid, "receipts"), {
        messageId: "nope",
        status: "read"
      })
      expect(unknownMessage).toMatchObject({ status: 404, body: { error: { code: "message_not_found" } } })
      const badStatus = yield* request(sim.controlUrl, "POST", devicePath(jid, "receipts"), {
        messageId: "nope",
        status: "seen"
      })
      expect(badStatus.status).toBe(400)
    }))

  it.scopedLive("answers the client's usync contact lookups: every valid phone number is on the sim's WhatsApp", () =>
    Effect.gen(function*() {
      const { client } = yield* linkedAndOpen
      const found = yield* Effect.promise(() => client.socket.onWhatsApp(contact))
      expect(found).toEqual([{ jid: `${contact}@s.whatsapp.net`, exists: true }])
    }))
})
