/**
 * The sim's memory: accounts, linked devices, connections waiting for a QR scan or a typed code, and which socket is
 * live for which device. It enforces WhatsApp's rule of one live socket per device (a new login replaces the old
 * socket with a 440) and counts every overlap, which is what tests of invariant 1 read.
 *
 * An overlap is a moment when two sockets for one device were both able to act: the older one answered within
 * `livenessProbeMs` of the newer one's login. At that login the older socket, if still open, is sent a WebSocket ping
 * just before its conflict; any frame from it within `livenessProbeMs` (the pong, or anything else it sent) counts one
 * overlap. A socket that stays silent belongs to a frozen or dead peer (a SIGSTOPped process, a vanished host: its
 * TCP connection is still open, but it cannot act) and counts nothing, even if it wakes up and talks later. A socket
 * whose close had begun before the login counts nothing either: its owner had already let go of it.
 */
import { Curve, type KeyPair } from "@whiskeysockets/baileys"
import { randomInt } from "node:crypto"
import type { Account, Device, KeyBundle, Snapshot } from "./model.js"
import type { BinaryNode } from "./nodes.js"

/** What the registry needs from a chat connection. */
export interface ChatSocket {
  readonly id: number
  /** Not closed or closing on either side. */
  readonly isOpen: boolean
  send(stanza: BinaryNode): void
  /** Sends a last stanza (stream error or failure) and closes the connection. */
  closeWith(stanza: BinaryNode): void
  /** Destroys the TCP connection without a goodbye. */
  terminate(): void
  /**
   * A black hole: the connection stays open, but from now on everything the client sends is lost on the way and
   * nothing is answered (a half-dead network path). Only the client's own keepalive can notice.
   */
  stall(): void
  /**
   * Sends a WebSocket ping at once, and resolves with whether the client sent any frame (the pong or anything else)
   * within `timeoutMs`; false as soon as the connection ends without one. Never rejects.
   */
  probeLiveness(timeoutMs: number): Promise<boolean>
  /** Sends an iq from the server and resolves with the client's answer. */
  request(build: (id: string) => BinaryNode, timeoutMs: number): Promise<BinaryNode>
  /** Resolves with the next stanza from the client that `matches` (and is not an answer to the server's iqs). */
  awaitStanza(matches: (stanza: BinaryNode) => boolean, timeoutMs: number): Promise<BinaryNode>
}

/** A new device that registered and shows QR codes until someone scans one. */
export interface PendingRegistration {
  readonly socket: ChatSocket
  readonly refs: ReadonlyArray<string>
  readonly noiseKey: Buffer
  readonly keys: KeyBundle
  readonly platform: string
  readonly createdAt: number
  readonly expiresAt: number
}

/** A registering client that asked to be linked to a phone number by a code its user types on that phone. */
export interface CodeRequest {
  readonly registration: PendingRegistration
  /** `link_code_pairing_ref`: names this request in the messages that follow. */
  readonly ref: string
  readonly phoneNumber: string
  /** salt(32) ‖ iv(16) ‖ AES-CTR(companion ephemeral public key) under a key derived from the code. */
  readonly wrappedEphemeral: Buffer
  readonly requestedAt: number
  readonly expiresAt: number
}

export interface PendingPairing {
  readonly ref: string
  readonly phoneNumber: string
  readonly requestedAt: number
  readonly expiresAt: number
}

export interface PendingQr {
  readonly ref: string
  /** `ref,base64(noise key),base64(identity key)`: the QR string up to the adv secret, which only the client has. */
  readonly qrPrefix: string
  readonly expiresAt: number
}

export interface RegistryOptions {
  /** How long the older socket of a replaced login has to answer for the login to count as an overlap. */
  readonly livenessProbeMs: number
}

export interface Stats {
  readonly devices: number
  readonly liveSockets: number
  /** Logins whose older socket of the same device answered its liveness probe in time (see the top of this file). */
  readonly overlaps: number
}

const randomLidUser = (): string => `${randomInt(100_000, 999_999)}${randomInt(100_000_000, 999_999_999)}`

export class Registry {
  private readonly accounts = new Map<string, Account>()
  private readonly accountsByLid = new Map<string, Account>()
  private readonly devices = new Map<string, Device>()
  private readonly pendingBySocket = new Map<number, PendingRegistration>()
  private readonly pendingByRef = new Map<string, PendingRegistration>()
  private readonly codeRequests = new Map<number, CodeRequest>()
  private readonly live = new Map<string, ChatSocket>()
  private readonly liveDevice = new Map<number, string>()
  private overlaps = 0
  /** Liveness probes of replaced sockets still running; each may yet count an overlap. */
  private readonly probes = new Set<Promise<void>>()
  private readonly changeListeners: Array<() => void> = []
  private readonly unlinkListeners: Array<(jid: string) => void> = []
  private readonly preKeyListeners: Array<(device: Device) => void> = []

  constructor(readonly root: KeyPair, private readonly options: RegistryOptions, snapshot?: Snapshot) {
    for (const account of snapshot?.accounts ?? []) {
      this.accounts.set(account.phoneNumber, account)
      this.accountsByLid.set(account.lidUser, account)
    }
    for (const device of snapshot?.devices ?? []) this.devices.set(device.jid, device)
  }

  snapshot(): Snapshot {
    return { root: this.root, accounts: [...this.accounts.values()], devices: [...this.devices.values()] }
  }

  /** Called after every change that belongs in the state file. */
  onChange(listener: () => void): void {
    this.changeListeners.push(listener)
  }

  /** Called after a device is unlinked, whoever unlinked it (the phone, or the client logging itself out). */
  onUnlink(listener: (jid: string) => void): void {
    this.unlinkListeners.push(listener)
  }

  /** Called after a device's one-time prekeys changed (an upload, or one handed out to a contact). */
  onPreKeysChange(listener: (device: Device) => void): void {
    this.preKeyListeners.push(listener)
  }

  preKeysChanged(device: Device): void {
    for (const listener of this.preKeyListeners) listener(device)
  }

  private changed(): void {
    for (const listener of this.changeListeners) listener()
  }

  /** The counts now; `overlaps` may still grow by the probes running (see `settledStats`). */
  stats(): Stats {
    let liveSockets = 0
    for (const socket of this.live.values()) if (socket.isOpen) liveSockets += 1
    return { devices: this.devices.size, liveSockets, overlaps: this.overlaps }
  }

  /**
   * The counts once every liveness probe running at the call has settled (at most `livenessProbeMs`), so a reader
   * never sees `overlaps` before the logins that happened before its call have been judged.
   */
  async settledStats(): Promise<Stats> {
    await Promise.all([...this.probes])
    return this.stats()
  }

  listDevices(): ReadonlyArray<Device & { readonly live: boolean }> {
    return [...this.devices.values()].map((device) => ({
      ...device,
      live: this.live.get(device.jid)?.isOpen === true
    }))
  }

  device(jid: string): Device | undefined {
    return this.devices.get(jid)
  }

  devicesOf(phoneNumber: string): ReadonlyArray<Device> {
    return [...this.devices.values()].filter((device) => device.phoneNumber === phoneNumber)
  }

  account(phoneNumber: string): Account | undefined {
    return this.accounts.get(phoneNumber)
  }

  accountByLid(lidUser: string): Account | undefined {
    return this.accountsByLid.get(lidUser)
  }

  /** The phone behind a number, created on first use (its first scan or first message). */
  ensureAccount(phoneNumber: string): Account {
    const existing = this.accounts.get(phoneNumber)
    if (existing) return existing
    const account: Account = {
      phoneNumber,
      lidUser: randomLidUser(),
      identity: Curve.generateKeyPair(),
      nextDeviceId: 1,
      createdAt: Date.now()
    }
    this.accounts.set(phoneNumber, account)
    this.accountsByLid.set(account.lidUser, account)
    this.changed()
    return account
  }

  allocateDeviceId(account: Account): number {
    const id = account.nextDeviceId
    account.nextDeviceId += 1
    this.changed()
    return id
  }

  link(device: Device): void {
    this.devices.set(device.jid, device)
    this.changed()
  }

  /** Unlinks a device; its live socket, if any, is returned so the caller can tell it. */
  unlink(jid: string): ChatSocket | undefined {
    if (!this.devices.delete(jid)) return undefined
    const socket = this.live.get(jid)
    if (socket) this.release(socket)
    this.changed()
    for (const listener of this.unlinkListeners) listener(jid)
    return socket
  }

  liveSocket(jid: string): ChatSocket | undefined {
    return this.live.get(jid)
  }

  /**
   * Marks `socket` as the live socket of `device` at once. The previous one, if any, is returned, no longer live, for
   * the caller to close with a conflict — as WhatsApp replaces the older login without waiting. If it is still open
   * it is probed first (the ping goes out now, ahead of the conflict the caller sends), and counted as an overlap
   * later if it answers in time. One whose close has begun (a close frame on its way) is neither probed nor counted.
   */
  authenticate(device: Device, socket: ChatSocket): ChatSocket | undefined {
    const previous = this.live.get(device.jid)
    if (previous) {
      if (previous.isOpen) this.probe(previous)
      this.liveDevice.delete(previous.id)
    }
    this.live.set(device.jid, socket)
    this.liveDevice.set(socket.id, device.jid)
    return previous
  }

  private probe(previous: ChatSocket): void {
    const probe = previous.probeLiveness(this.options.livenessProbeMs).then((answered) => {
      if (answered) this.overlaps += 1
      this.probes.delete(probe)
    })
    this.probes.add(probe)
  }

  /** The socket is closing or closed: it is live no more, and neither its QR codes nor its pairing code work. */
  release(socket: ChatSocket): void {
    const jid = this.liveDevice.get(socket.id)
    if (jid !== undefined) {
      this.liveDevice.delete(socket.id)
      if (this.live.get(jid) === socket) this.live.delete(jid)
    }
    this.removePending(socket.id)
  }

  addPending(pending: PendingRegistration): void {
    this.pendingBySocket.set(pending.socket.id, pending)
    for (const ref of pending.refs) this.pendingByRef.set(ref, pending)
  }

  /** Takes the registration (its QR codes and its code request) out of reach: a scan or a typed code claims it. */
  removePending(socketId: number): PendingRegistration | undefined {
    const pending = this.pendingBySocket.get(socketId)
    this.codeRequests.delete(socketId)
    if (!pending) return undefined
    this.pendingBySocket.delete(socketId)
    for (const ref of pending.refs) this.pendingByRef.delete(ref)
    return pending
  }

  /** The registration of a connection, while nobody has claimed it. */
  pendingOf(socketId: number): PendingRegistration | undefined {
    return this.pendingBySocket.get(socketId)
  }

  /** Records (or replaces) the code request of a registering connection. */
  requestCode(request: CodeRequest): void {
    this.codeRequests.set(request.registration.socket.id, request)
  }

  /**
   * Gives a claimed registration back after a failed code entry, if its connection is still open: the client still
   * shows the same code and can be linked by a scan or by the right code.
   */
  restorePending(request: CodeRequest): void {
    if (!request.registration.socket.isOpen || this.pendingBySocket.has(request.registration.socket.id)) return
    this.addPending(request.registration)
    this.requestCode(request)
  }

  /** The newest request for a code pairing with `phoneNumber` that has not expired: the one the phone shows. */
  codeRequestFor(phoneNumber: string, now: number): CodeRequest | undefined {
    let newest: CodeRequest | undefined
    for (const request of this.codeRequests.values()) {
      if (request.phoneNumber !== phoneNumber || request.expiresAt <= now) continue
      if (!newest || request.requestedAt >= newest.requestedAt) newest = request
    }
    return newest
  }

  pendingPairings(now: number): ReadonlyArray<PendingPairing> {
    return [...this.codeRequests.values()]
      .filter((request) => request.expiresAt > now)
      .map(({ expiresAt, phoneNumber, ref, requestedAt }) => ({ ref, phoneNumber, requestedAt, expiresAt }))
  }

  /** The registration a QR ref belongs to, if it is still waiting and has not expired. */
  pendingByQrRef(ref: string, now: number): PendingRegistration | undefined {
    const pending = this.pendingByRef.get(ref)
    return pending && pending.expiresAt > now ? pending : undefined
  }

  pendingQrs(now: number): ReadonlyArray<PendingQr> {
    const qrs: Array<PendingQr> = []
    for (const pending of this.pendingBySocket.values()) {
      if (pending.expiresAt <= now) continue
      const keys = `${pending.noiseKey.toString("base64")},${pending.keys.identityKey.toString("base64")}`
      for (const ref of pending.refs) qrs.push({ ref, qrPrefix: `${ref},${keys}`, expiresAt: pending.expiresAt })
    }
    return qrs
  }
}
