/**
 * 1:1 text messaging between linked devices and virtual contacts (other phone numbers, each a `VirtualPhone`).
 * Inbound: a contact encrypts to the device's uploaded prekeys and the server delivers (or queues while the device
 * is offline). Outbound: the client asks usync for devices and LIDs, fetches prekey bundles, sends one `<enc>` per
 * device; the sim decrypts as each recipient phone, records the text and acks. Receipts are the contact's.
 */
import { generateMessageID, jidDecode, type proto } from "@whiskeysockets/baileys"
import { simError } from "../WaSimError.js"
import type { ChatConnection } from "./ChatConnection.js"
import type { Account, Device, KeyBundle } from "./model.js"
import {
  bigEndian,
  type BinaryNode,
  bytes,
  child,
  children,
  childrenNamed,
  iqResult,
  node,
  unixSeconds
} from "./nodes.js"
import { validatePhoneNumber } from "./phone.js"
import type { Registry } from "./Registry.js"
import { ackOf, type Messaging } from "./stanzas.js"
import { type CipherType, VirtualPhone } from "./VirtualPhone.js"

export interface SentMessage {
  readonly id: string
  /** The chat the client addressed (`<phone>@s.whatsapp.net` or `<lid>@lid`). */
  readonly to: string
  readonly phoneNumber: string
  /** The text, or null when the message was not text or could not be decrypted (see `error`). */
  readonly text: string | null
  readonly at: string
  status: "sent" | "delivered" | "read"
  readonly error?: string
}

export class Messenger implements Messaging {
  private readonly phones = new Map<string, VirtualPhone>()
  private readonly sent = new Map<string, Array<SentMessage>>()
  private readonly offline = new Map<string, Array<BinaryNode>>()

  constructor(private readonly registry: Registry, private readonly onError: (error: unknown) => void) {}

  private phoneOf(account: Account): VirtualPhone {
    let phone = this.phones.get(account.phoneNumber)
    if (!phone) this.phones.set(account.phoneNumber, phone = new VirtualPhone(account))
    return phone
  }

  /** The account behind a user jid (phone number or LID); every valid phone number is on the sim's WhatsApp. */
  private accountOf(jid: string): Account | undefined {
    const decoded = jidDecode(jid)
    if (!decoded?.user) return undefined
    if (decoded.server === "lid") return this.registry.accountByLid(decoded.user)
    if (decoded.server !== "s.whatsapp.net") return undefined
    const phone = validatePhoneNumber(decoded.user)
    return typeof phone === "string" ? this.registry.ensureAccount(phone) : undefined
  }

  /** Sends a stanza to the device now, or when it next logs in. */
  private deliver(device: Device, stanza: BinaryNode): void {
    const socket = this.registry.liveSocket(device.jid)
    if (socket) return socket.send(stanza)
    const queue = this.offline.get(device.jid) ?? []
    queue.push({ ...stanza, attrs: { ...stanza.attrs, offline: "1" } })
    this.offline.set(device.jid, queue)
  }

  private linkedDevice(jid: string): Device {
    const device = this.registry.device(jid)
    if (!device) throw simError("device_not_found", `no linked device ${jid}`)
    return device
  }

  /** A text from `fromPhoneNumber` to the device, encrypted by the contact's phone. */
  async sendText(deviceJid: string, fromPhoneNumber: string, text: string): Promise<{ readonly id: string }> {
    const device = this.linkedDevice(deviceJid)
    const from = validatePhoneNumber(fromPhoneNumber)
    if (typeof from !== "string") throw from
    const contact = this.registry.ensureAccount(from)
    const id = generateMessageID()
    const { ciphertext, type } = await this.phoneOf(contact).encrypt(
      device.jid,
      { conversation: text },
      () => this.takeBundle(device)
    )
    this.deliver(
      device,
      node("message", {
        from: `${from}@s.whatsapp.net`,
        sender_lid: `${contact.lidUser}@lid`,
        type: "text",
        id,
        t: unixSeconds()
      }, [node("enc", { v: "2", type }, ciphertext)])
    )
    return { id }
  }

  sentBy(deviceJid: string): ReadonlyArray<SentMessage> {
    this.linkedDevice(deviceJid)
    return this.sent.get(deviceJid) ?? []
  }

  /** The contact got (or read) a message the device sent: a server receipt the client turns into a status. */
  receiptFor(deviceJid: string, messageId: string, status: "delivered" | "read"): void {
    const device = this.linkedDevice(deviceJid)
    const message = this.sent.get(deviceJid)?.find((sent) => sent.id === messageId)
    if (!message) throw simError("message_not_found", `the device ${deviceJid} sent no message ${messageId}`)
    if (status === "read" || message.status === "sent") message.status = status
    this.deliver(
      device,
      node("receipt", {
        from: message.to,
        id: messageId,
        t: unixSeconds(),
        type: status === "read" ? "read" : undefined
      })
    )
  }

  async flushOffline(connection: ChatConnection, device: Device): Promise<number> {
    const queue = this.offline.get(device.jid) ?? []
    this.offline.delete(device.jid)
    for (const stanza of queue) connection.send(stanza)
    return queue.length
  }

  async usync(connection: ChatConnection, _device: Device, iq: BinaryNode): Promise<void> {
    const usync = child(iq, "usync")
    const protocols = new Set(children(child(usync, "query")).map((protocol) => protocol.tag))
    const users: Array<BinaryNode> = []
    for (const user of childrenNamed(child(usync, "list"), "user")) {
      const contactPhone = bytes(child(user, "contact"))?.toString("utf8").replace(/^\+/, "")
      const jid = user.attrs.jid ?? (contactPhone ? `${contactPhone}@s.whatsapp.net` : undefined)
      const account = jid ? this.accountOf(jid) : undefined
      if (!jid || !account) continue
      const isLid = jid.endsWith("@lid")
      const content: Array<BinaryNode> = []
      if (protocols.has("devices")) {
        // Only the phone (device 0): the sim does not fan messages out to a contact's other linked devices.
        content.push(node("devices", {}, [
          node("device-list", {}, [node("device", { id: "0" })]),
          node("key-index-list", { ts: unixSeconds(account.createdAt) })
        ]))
      }
      if (protocols.has("lid") && !isLid) content.push(node("lid", { val: `${account.lidUser}@lid` }))
      if (protocols.has("contact")) content.push(node("contact", { type: "in" }))
      users.push(node("user", { jid: isLid ? jid : `${account.phoneNumber}@s.whatsapp.net` }, content))
    }
    connection.send(iqResult(iq, [node("usync", { sid: child(iq, "usync")?.attrs.sid }, [node("list", {}, users)])]))
  }

  async fetchPreKeys(connection: ChatConnection, _device: Device, iq: BinaryNode): Promise<void> {
    const users: Array<BinaryNode> = []
    for (const user of childrenNamed(child(iq, "key"), "user")) {
      const jid = user.attrs.jid
      const decoded = jidDecode(jid)
      const account = jid ? this.accountOf(jid) : undefined
      if (!jid || !decoded || !account) continue
      const companion = decoded.device
        ? this.registry.device(`${account.phoneNumber}:${decoded.device}@s.whatsapp.net`)
        : undefined
      if (decoded.device && !companion) continue
      const bundle = companion ? this.takeBundle(companion) : await this.phoneOf(account).takeBundle()
      users.push(bundleNode(jid, bundle))
    }
    connection.send(iqResult(iq, [node("list", {}, users)]))
  }

  async message(connection: ChatConnection, device: Device, stanza: BinaryNode): Promise<void> {
    const chat = stanza.attrs.to ?? ""
    const targets = childrenNamed(child(stanza, "participants"), "to").map((to) => ({
      jid: to.attrs.jid ?? "",
      enc: child(to, "enc")
    }))
    const direct = child(stanza, "enc")
    if (direct) targets.push({ jid: chat, enc: direct })
    const chatAccount = this.accountOf(chat)
    // A note to self: the device writes to its own number, and its phone's copy is the message.
    const noteToSelf = chatAccount?.phoneNumber === device.phoneNumber
    let recorded = false
    for (const { enc, jid } of targets) {
      const account = this.accountOf(jid)
      const ciphertext = bytes(enc)
      const type = enc?.attrs.type
      if (!account || !ciphertext || (type !== "pkmsg" && type !== "msg")) continue
      const result = await this.decrypt(account, device, type, ciphertext)
      // Copies for the sender's own phone keep that session in step; only the recipient's copy is the message.
      if (account !== chatAccount || (account.phoneNumber === device.phoneNumber && !noteToSelf) || recorded) continue
      recorded = true
      this.record(device, {
        id: stanza.attrs.id ?? "",
        to: chat,
        phoneNumber: account.phoneNumber,
        text: "message" in result ? textOf(result.message) : null,
        at: new Date().toISOString(),
        status: "sent",
        ...("error" in result ? { error: result.error } : {})
      })
    }
    connection.send(ackOf(stanza, "message"))
  }

  async receipt(connection: ChatConnection, _device: Device, stanza: BinaryNode): Promise<void> {
    connection.send(ackOf(stanza, "receipt"))
  }

  private async decrypt(account: Account, device: Device, type: CipherType, ciphertext: Buffer) {
    try {
      return { message: await this.phoneOf(account).decrypt(device.jid, type, ciphertext) }
    } catch (error) {
      this.onError(error)
      return { error: error instanceof Error ? error.message : String(error) }
    }
  }

  private record(device: Device, message: SentMessage): void {
    const list = this.sent.get(device.jid) ?? []
    list.push(message)
    this.sent.set(device.jid, list)
  }

  /** Forgets what belonged to an unlinked device. */
  /** Hands out one of the device's uploaded one-time prekeys (each is used once), with its signed prekey. */
  private takeBundle(device: Device): KeyBundle {
    const bundle = takeBundle(device)
    if (bundle.preKeys.size > 0) this.registry.preKeysChanged(device)
    return bundle
  }

  forget(deviceJid: string): void {
    this.sent.delete(deviceJid)
    this.offline.delete(deviceJid)
  }
}

/** The text of a message, or of the message a copy for the sender's own phone (`deviceSentMessage`) carries. */
const textOf = (message: proto.IMessage): string | null =>
  message.conversation ?? message.extendedTextMessage?.text ??
    (message.deviceSentMessage?.message ? textOf(message.deviceSentMessage.message) : null)

/** Takes one of the device's one-time prekeys out of its record. */
const takeBundle = (device: Device): KeyBundle => {
  const keys = device.keys
  const first = keys.preKeys.entries().next()
  const preKeys = new Map<number, Buffer>()
  if (!first.done) {
    const [id, publicKey] = first.value
    keys.preKeys.delete(id)
    preKeys.set(id, publicKey)
  }
  return { ...keys, preKeys }
}

const bundleNode = (jid: string, bundle: KeyBundle): BinaryNode => {
  const [preKey] = bundle.preKeys
  return node("user", { jid }, [
    node("registration", {}, bigEndian(bundle.registrationId, 4)),
    node("type", {}, Buffer.from([5])),
    node("identity", {}, bundle.identityKey),
    node("skey", {}, [
      node("id", {}, bigEndian(bundle.signedPreKey.id, 3)),
      node("value", {}, bundle.signedPreKey.publicKey),
      node("signature", {}, bundle.signedPreKey.signature)
    ]),
    ...(preKey ? [node("key", {}, [node("id", {}, bigEndian(preKey[0], 3)), node("value", {}, preKey[1])])] : [])
  ])
}
