/**
 * One client WebSocket: the Noise handshake, then either a registration (QR codes until a scan links the device, or a
 * code request until the code is typed on the phone) or a login of a linked device, then stanzas. Incoming data is
 * processed strictly in order, because Noise counters and the client's expectations both depend on it.
 */
import { decodeBinaryNode, encodeBinaryNode, proto } from "@whiskeysockets/baileys"
import { randomBytes } from "node:crypto"
import type { WebSocket } from "ws"
import type { ServerIdentity } from "./certificates.js"
import { companionHelloResult, linkCodeStage, parseCompanionHello } from "./linkCode.js"
import type { Device, KeyBundle } from "./model.js"
import { type BinaryNode, iqError, node, SERVER, unixSeconds } from "./nodes.js"
import { encodeFrame, FrameReader, type NoiseTransport, respondToHello, splitIntro } from "./noise.js"
import type { ChatSocket, PendingRegistration, Registry } from "./Registry.js"

export interface ConnectionHost {
  readonly identity: ServerIdentity
  readonly registry: Registry
  readonly qrRefs: number
  readonly qrTtlMs: number
  /** Stanzas of an authenticated device that are not answers to the server's own iqs. */
  readonly onStanza: (connection: ChatConnection, device: Device, stanza: BinaryNode) => Promise<void>
  readonly onError: (error: unknown) => void
}

type Phase =
  | { readonly _tag: "AwaitingHello" }
  | { readonly _tag: "AwaitingFinish"; readonly read: ReturnType<typeof respondToHello>["readClientFinish"] }
  | { readonly _tag: "Registered" }
  | { readonly _tag: "Authenticated"; readonly device: Device }
  | { readonly _tag: "Closed" }

interface OutstandingIq {
  readonly resolve: (reply: BinaryNode) => void
  readonly reject: (error: Error) => void
  readonly timer: NodeJS.Timeout
}

interface StanzaWaiter extends OutstandingIq {
  readonly matches: (stanza: BinaryNode) => boolean
}

let nextConnectionId = 1

export const streamError = {
  conflict: () => node("stream:error", {}, [node("conflict", { type: "replaced" })]),
  loggedOut: () => node("stream:error", { code: "401" }, [node("conflict", { type: "device_removed" })]),
  restartRequired: () => node("stream:error", { code: "515" })
}

export const loginFailure = () => node("failure", { reason: "401", location: "sim" })

export class ChatConnection implements ChatSocket {
  readonly id = nextConnectionId++
  private phase: Phase = { _tag: "AwaitingHello" }
  private introHeader: Buffer | undefined
  private transport: NoiseTransport | undefined
  private readonly frames = new FrameReader()
  private queue: Promise<void> = Promise.resolve()
  private readonly outstanding = new Map<string, OutstandingIq>()
  private readonly waiters = new Set<StanzaWaiter>()
  private nextIqId = 1
  /** When the client last sent anything; Baileys pings every 30 s by default, so silence means a dead peer. */
  lastHeardAt = Date.now()
  private stalled = false

  constructor(private readonly ws: WebSocket, private readonly host: ConnectionHost) {
    ws.on("message", (data: Buffer) => {
      this.lastHeardAt = Date.now()
      this.queue = this.queue.then(() => this.onData(data)).catch((error: unknown) => {
        host.onError(error)
        this.terminate()
      })
    })
    // Stanzas that arrived before the close are still handled (a client logging out sends its last iq and closes at
    // once), so the close takes its turn behind them.
    ws.on("close", () => {
      this.queue = this.queue.then(() => this.markClosed())
    })
    ws.on("error", () => this.terminate())
  }

  /** False from the moment either side starts closing (ws is CLOSING once a close frame arrived). */
  get isOpen(): boolean {
    return this.phase._tag !== "Closed" && this.ws.readyState === this.ws.OPEN
  }

  private closed(): boolean {
    return this.phase._tag === "Closed"
  }

  send(stanza: BinaryNode): void {
    if (!this.transport || this.phase._tag === "Closed") return
    this.ws.send(encodeFrame(this.transport.encrypt(encodeBinaryNode(stanza))))
  }

  closeWith(stanza: BinaryNode): void {
    if (this.phase._tag === "Closed") return
    this.send(stanza)
    this.markClosed()
    this.ws.close()
  }

  terminate(): void {
    this.markClosed()
    this.ws.terminate()
  }

  /**
   * A WebSocket ping rather than WhatsApp's `urn:xmpp:ping` iq: Baileys 7.0.0-rc14 has no handler for server pings
   * and would stay silent, while its `ws` answers a ping frame with a pong from its event loop, which a frozen
   * process cannot run. Any other frame proves the same. The ping is written before this returns, so it reaches the
   * client ahead of a conflict sent next (a client that is already closing cannot be pinged any more).
   */
  probeLiveness(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      if (!this.isOpen) return resolve(false)
      const ws = this.ws
      let settled = false
      const settle = (answered: boolean) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        ws.off("pong", heard).off("message", heard).off("close", silent)
        resolve(answered)
      }
      const heard = () => settle(true)
      const silent = () => settle(false)
      // Frames that reached the socket before the deadline count even if the event loop was too busy to read them:
      // the poll phase, which reads them, runs between this timer and the immediate.
      const timer = setTimeout(() => setImmediate(silent), timeoutMs)
      ws.on("pong", heard).on("message", heard).on("close", silent)
      try {
        ws.ping()
      } catch {
        silent()
      }
    })
  }

  /** Sends an iq from the server and waits for the client's answer with the same id. */
  request(build: (id: string) => BinaryNode, timeoutMs: number): Promise<BinaryNode> {
    const id = `sim-${this.id}-${this.nextIqId++}`
    return new Promise((resolve, reject) => {
      if (this.phase._tag === "Closed") return reject(new Error("connection closed"))
      const timer = setTimeout(() => {
        this.outstanding.delete(id)
        reject(new Error(`no answer to iq ${id} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.outstanding.set(id, { resolve, reject, timer })
      this.send(build(id))
    })
  }

  /** Waits for the next stanza from the client that `matches`; the waiter owns it (and answers it if it is an iq). */
  awaitStanza(matches: (stanza: BinaryNode) => boolean, timeoutMs: number): Promise<BinaryNode> {
    return new Promise((resolve, reject) => {
      if (this.phase._tag === "Closed") return reject(new Error("connection closed"))
      const waiter: StanzaWaiter = {
        matches,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter)
          reject(new Error(`no matching stanza within ${timeoutMs} ms`))
        }, timeoutMs)
      }
      this.waiters.add(waiter)
    })
  }

  private markClosed(): void {
    if (this.phase._tag === "Closed") return
    this.phase = { _tag: "Closed" }
    this.host.registry.release(this)
    for (const [id, pending] of this.outstanding) {
      clearTimeout(pending.timer)
      pending.reject(new Error(`connection closed before the answer to iq ${id}`))
    }
    this.outstanding.clear()
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer)
      waiter.reject(new Error("connection closed before the awaited stanza"))
    }
    this.waiters.clear()
  }

  stall(): void {
    this.stalled = true
  }

  private async onData(data: Buffer): Promise<void> {
    if (this.phase._tag === "Closed" || this.stalled) return
    let chunk = data
    if (!this.introHeader) {
      const intro = splitIntro(data)
      if (!intro) return this.terminate()
      this.introHeader = intro.header
      chunk = intro.rest
    }
    for (const frame of this.frames.push(chunk)) {
      // A frame before this one may have made the server close the connection.
      if (this.closed()) return
      if (this.transport) {
        await this.onStanza(await decodeBinaryNode(this.transport.decrypt(frame)))
      } else {
        this.onHandshake(frame)
      }
    }
  }

  private onHandshake(frame: Buffer): void {
    const message = proto.HandshakeMessage.decode(frame)
    if (this.phase._tag === "AwaitingHello") {
      const ephemeral = message.clientHello?.ephemeral
      if (!ephemeral || ephemeral.length !== 32 || !this.introHeader) return this.terminate()
      const { readClientFinish, serverHello } = respondToHello({
        introHeader: this.introHeader,
        clientEphemeral: ephemeral,
        serverStatic: this.host.identity.serverStatic,
        certificateChain: this.host.identity.certificateChain
      })
      this.phase = { _tag: "AwaitingFinish", read: readClientFinish }
      this.ws.send(encodeFrame(proto.HandshakeMessage.encode({ serverHello }).finish()))
      return
    }
    if (this.phase._tag !== "AwaitingFinish") return this.terminate()
    const finish = message.clientFinish
    if (!finish?.static || !finish.payload) return this.terminate()
    const { clientStatic, payload, transport } = this.phase.read({ static: finish.static, payload: finish.payload })
    this.transport = transport
    this.onClientPayload(clientStatic, proto.ClientPayload.decode(payload))
  }

  private onClientPayload(noiseKey: Buffer, payload: proto.ClientPayload): void {
    const username = payload.username === null || payload.username === undefined ? "" : String(payload.username)
    if (username !== "" && username !== "0") return this.login(noiseKey, username, payload.device ?? 0)
    const pairing = payload.devicePairingData
    const keys = pairing ? keyBundleOf(pairing) : undefined
    if (!pairing || !keys) return this.closeWith(loginFailure())
    this.register(noiseKey, keys, platformOf(pairing))
  }

  private login(noiseKey: Buffer, username: string, deviceId: number): void {
    const jid = deviceId === 0 ? `${username}@s.whatsapp.net` : `${username}:${deviceId}@s.whatsapp.net`
    const device = this.host.registry.device(jid)
    if (!device || !device.noiseKey.equals(noiseKey)) return this.closeWith(loginFailure())
    const account = this.host.registry.account(device.phoneNumber)
    this.phase = { _tag: "Authenticated", device }
    // The older socket is replaced at once; whether it counts as an overlap is decided later by its liveness probe.
    this.host.registry.authenticate(device, this)?.closeWith(streamError.conflict())
    this.send(node("success", {
      t: unixSeconds(),
      props: "1",
      abprops: "1",
      location: "sim",
      lid: device.lid,
      creation: unixSeconds(account?.createdAt ?? device.linkedAt),
      display_name: ""
    }))
  }

  private register(noiseKey: Buffer, keys: KeyBundle, platform: string): void {
    const now = Date.now()
    const refs = Array.from({ length: this.host.qrRefs }, () => `2@${randomBytes(18).toString("base64url")}`)
    const pending: PendingRegistration = {
      socket: this,
      refs,
      noiseKey,
      keys,
      platform,
      createdAt: now,
      expiresAt: now + this.host.qrTtlMs
    }
    this.phase = { _tag: "Registered" }
    this.host.registry.addPending(pending)
    this.request(
      (id) =>
        node("iq", { from: SERVER, type: "set", id, xmlns: "md" }, [
          node("pair-device", {}, refs.map((ref) => node("ref", {}, ref)))
        ]),
      60_000
    ).catch(() => undefined)
  }

  private async onStanza(stanza: BinaryNode): Promise<void> {
    const id = stanza.attrs.id
    if (stanza.tag === "iq" && (stanza.attrs.type === "result" || stanza.attrs.type === "error") && id) {
      const pending = this.outstanding.get(id)
      if (pending) {
        this.outstanding.delete(id)
        clearTimeout(pending.timer)
        pending.resolve(stanza)
        return
      }
    }
    for (const waiter of this.waiters) {
      if (!waiter.matches(stanza)) continue
      this.waiters.delete(waiter)
      clearTimeout(waiter.timer)
      waiter.resolve(stanza)
      return
    }
    if (this.phase._tag === "Authenticated") return this.host.onStanza(this, this.phase.device, stanza)
    const stage = linkCodeStage(stanza)
    if (stage === "companion_hello") return this.onCompanionHello(stanza)
    // A companion_finish nobody waits for: no code was typed for this client (or the phone gave up on it).
    if (stage !== undefined) return this.send(iqError(stanza, 400, "bad-request"))
    // Before login only iqs need an answer; anything else (telemetry and the like) is dropped.
    if (stanza.tag === "iq" && stanza.attrs.type !== "result" && stanza.attrs.type !== "error") {
      this.send(node("iq", { from: SERVER, type: "result", id }))
    }
  }

  /**
   * The registering client asks to be linked by code instead of QR (`requestPairingCode`). It keeps showing QR codes
   * meanwhile; whichever comes first, a scan or the typed code, links it. A second request replaces the first.
   */
  private onCompanionHello(iq: BinaryNode): void {
    const hello = parseCompanionHello(iq)
    const registration = this.phase._tag === "Registered" ? this.host.registry.pendingOf(this.id) : undefined
    if (!hello || !registration || !hello.noiseKey.equals(registration.noiseKey)) {
      return this.send(iqError(iq, 400, "bad-request"))
    }
    const now = Date.now()
    const ref = `2@${randomBytes(18).toString("base64url")}`
    this.host.registry.requestCode({
      registration,
      ref,
      phoneNumber: hello.phoneNumber,
      wrappedEphemeral: hello.wrappedEphemeral,
      requestedAt: now,
      expiresAt: now + this.host.qrTtlMs
    })
    this.send(companionHelloResult(iq, ref))
  }
}

const keyBundleOf = (pairing: proto.ClientPayload.IDevicePairingRegistrationData): KeyBundle | undefined => {
  const { eIdent, eRegid, eSkeyId, eSkeySig, eSkeyVal } = pairing
  if (!eIdent || !eRegid || !eSkeyId || !eSkeySig || !eSkeyVal) return undefined
  if (eIdent.length !== 32 || eSkeyVal.length !== 32 || eRegid.length !== 4 || eSkeyId.length !== 3) return undefined
  return {
    registrationId: Buffer.from(eRegid).readUInt32BE(0),
    identityKey: Buffer.from(eIdent),
    signedPreKey: {
      id: Buffer.from(eSkeyId).readUIntBE(0, 3),
      publicKey: Buffer.from(eSkeyVal),
      signature: Buffer.from(eSkeySig)
    },
    preKeys: new Map()
  }
}

const platformOf = (pairing: proto.ClientPayload.IDevicePairingRegistrationData): string => {
  if (!pairing.deviceProps) return "unknown"
  const props = proto.DeviceProps.decode(pairing.deviceProps)
  const type = props.platformType === null || props.platformType === undefined
    ? "UNKNOWN"
    : proto.DeviceProps.PlatformType[props.platformType]
  return `${props.os ?? "unknown"} (${type ?? "UNKNOWN"})`
}
