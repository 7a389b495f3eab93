/**
 * Answers for what an authenticated client sends. Every iq gets an answer (Baileys waits on each one, up to its
 * query timeout); the few whose content the client reads get the content it reads. Messaging plugs in through
 * `Messaging` for usync, prekey fetches, messages and receipts.
 */
import { createHash } from "node:crypto"
import type { ChatConnection } from "./ChatConnection.js"
import type { Device } from "./model.js"
import {
  bigEndian,
  type BinaryNode,
  child,
  childBytes,
  children,
  childrenNamed,
  childUInt,
  iqResult,
  node,
  SERVER
} from "./nodes.js"
import type { Registry } from "./Registry.js"

/** What messaging adds to the core; every method answers the stanza itself. */
export interface Messaging {
  readonly usync: (connection: ChatConnection, device: Device, iq: BinaryNode) => Promise<void>
  readonly fetchPreKeys: (connection: ChatConnection, device: Device, iq: BinaryNode) => Promise<void>
  readonly message: (connection: ChatConnection, device: Device, stanza: BinaryNode) => Promise<void>
  readonly receipt: (connection: ChatConnection, device: Device, stanza: BinaryNode) => Promise<void>
  /** Delivers what arrived while the device was offline; returns how many stanzas it sent. */
  readonly flushOffline: (connection: ChatConnection, device: Device) => Promise<number>
}

export const makeStanzaHandler = (registry: Registry, messaging: Messaging | undefined) => {
  const onIq = async (connection: ChatConnection, device: Device, iq: BinaryNode): Promise<void> => {
    const type = iq.attrs.type
    if (type === "result" || type === "error") return
    const first = children(iq)[0]?.tag
    switch (iq.attrs.xmlns) {
      case "encrypt":
        return onEncrypt(connection, device, iq, first)
      case "passive": {
        connection.send(iqResult(iq))
        // The client has finished its login sequence: hand over the offline queue, then say it is drained.
        const count = messaging && first === "active" ? await messaging.flushOffline(connection, device) : 0
        if (first === "active") {
          connection.send(node("ib", { from: SERVER }, [node("offline", { count: String(count) })]))
        }
        return
      }
      case "abt":
        return connection.send(iqResult(iq, [node("props", { protocol: "1", hash: "sim" })]))
      case "blocklist":
        return connection.send(iqResult(iq, [node("list", {})]))
      case "privacy":
        return connection.send(iqResult(iq, [node("privacy", {}, privacyCategories())]))
      case "md":
        if (first === "remove-companion-device") {
          // The client logs itself out: unlink it like the phone would, then let it close.
          connection.send(iqResult(iq))
          registry.unlink(device.jid)
          return
        }
        return connection.send(iqResult(iq))
      case "usync":
        if (messaging) return messaging.usync(connection, device, iq)
        return connection.send(iqResult(iq, [node("usync", {}, [node("list", {})])]))
      default:
        return connection.send(iqResult(iq))
    }
  }

  const onEncrypt = async (connection: ChatConnection, device: Device, iq: BinaryNode, first: string | undefined) => {
    const keys = device.keys
    if (iq.attrs.type === "get" && first === "count") {
      return connection.send(iqResult(iq, [node("count", { value: String(keys.preKeys.size) })]))
    }
    if (iq.attrs.type === "get" && first === "digest") {
      return connection.send(iqResult(iq, [digest(device)]))
    }
    if (iq.attrs.type === "get" && first === "key" && messaging) {
      return messaging.fetchPreKeys(connection, device, iq)
    }
    if (iq.attrs.type === "set" && child(iq, "list")) {
      const registrationId = childUInt(iq, "registration")
      const identity = childBytes(iq, "identity")
      if (registrationId !== undefined) keys.registrationId = registrationId
      if (identity?.length === 32) keys.identityKey = identity
      for (const key of childrenNamed(child(iq, "list"), "key")) {
        const id = childUInt(key, "id")
        const value = childBytes(key, "value")
        if (id !== undefined && value?.length === 32) keys.preKeys.set(id, value)
      }
      registry.preKeysChanged(device)
      storeSignedPreKey(device, child(iq, "skey"))
      return connection.send(iqResult(iq))
    }
    if (iq.attrs.type === "set" && first === "rotate") {
      storeSignedPreKey(device, child(child(iq, "rotate"), "skey"))
      return connection.send(iqResult(iq))
    }
    return connection.send(iqResult(iq))
  }

  return async (connection: ChatConnection, device: Device, stanza: BinaryNode): Promise<void> => {
    switch (stanza.tag) {
      case "iq":
        return onIq(connection, device, stanza)
      case "message":
        if (messaging) return messaging.message(connection, device, stanza)
        return connection.send(ackOf(stanza, "message"))
      case "receipt":
        if (messaging) return messaging.receipt(connection, device, stanza)
        return connection.send(ackOf(stanza, "receipt"))
      default:
        // ack, ib, presence, chatstate, call answers: nothing to say back.
        return
    }
  }
}

export const ackOf = (stanza: BinaryNode, ackClass: string): BinaryNode =>
  node("ack", {
    class: ackClass,
    id: stanza.attrs.id,
    from: stanza.attrs.to ?? SERVER,
    type: stanza.attrs.type,
    t: Math.floor(Date.now() / 1000).toString()
  })

const storeSignedPreKey = (device: Device, skey: BinaryNode | undefined): void => {
  const id = childUInt(skey, "id")
  const publicKey = childBytes(skey, "value")
  const signature = childBytes(skey, "signature")
  if (id === undefined || publicKey?.length !== 32 || !signature) return
  device.keys.signedPreKey = { id, publicKey, signature }
}

/** The server's view of the key bundle; Baileys only checks that it is there, WhatsApp also sends the hash. */
const digest = (device: Device): BinaryNode => {
  const { identityKey, preKeys, registrationId, signedPreKey } = device.keys
  const ids = [...preKeys.keys()]
  const hash = createHash("sha1")
  hash.update(identityKey).update(signedPreKey.publicKey).update(signedPreKey.signature)
  for (const id of ids) hash.update(preKeys.get(id) ?? Buffer.alloc(0))
  return node("digest", {}, [
    node("registration", {}, bigEndian(registrationId, 4)),
    node("type", {}, Buffer.from([5])),
    node("identity", {}, identityKey),
    node("skey", {}, [
      node("id", {}, bigEndian(signedPreKey.id, 3)),
      node("value", {}, signedPreKey.publicKey),
      node("signature", {}, signedPreKey.signature)
    ]),
    node("list", {}, ids.map((id) => node("id", {}, bigEndian(id, 3)))),
    node("hash", {}, hash.digest())
  ])
}

const privacyCategories = (): Array<BinaryNode> =>
  [
    ["last", "all"],
    ["online", "all"],
    ["profile", "all"],
    ["status", "contacts"],
    ["groupadd", "all"],
    ["readreceipts", "all"],
    ["calladd", "all"]
  ].map(([name, value]) => node("category", { name, value }))
