/**
 * What the control API does as "the phone and the network": scan a QR code or type a pairing code, unlink a device,
 * log a device in somewhere else (conflict) and cut its connection.
 */
import { Curve } from "@whiskeysockets/baileys"
import { simError, type WaSimError } from "../WaSimError.js"
import { loginFailure, streamError } from "./ChatConnection.js"
import {
  linkCodeStage,
  normalizeCode,
  openCompanionFinish,
  primaryHello,
  unwrapCompanionEphemeral
} from "./linkCode.js"
import { iqResult, isPhoneNumber } from "./nodes.js"
import { type PairingTarget, pairSuccess, parseQr, verifyPairDeviceSign } from "./pairing.js"
import type { PendingRegistration, Registry } from "./Registry.js"

export const validatePhoneNumber = (phoneNumber: string): string | WaSimError =>
  isPhoneNumber(phoneNumber)
    ? phoneNumber
    : simError("invalid_request", "phoneNumber must be 6 to 15 digits in E.164 without the plus sign")

/**
 * Links the device showing `qr` to the account of `phoneNumber`: sends `pair-success`, waits for the device to sign
 * it, records the device and asks the client to reconnect (515), which it does with a login.
 */
export const scan = async (
  registry: Registry,
  qr: string,
  phoneNumber: string,
  pairingTimeoutMs: number
): Promise<{ readonly jid: string }> => {
  const phone = validatePhoneNumber(phoneNumber)
  if (typeof phone !== "string") throw phone
  const parsed = parseQr(qr)
  if (!parsed) throw simError("invalid_request", "qr is not a WhatsApp QR string (ref,noiseKey,identityKey,advSecret)")
  const pending = registry.pendingByQrRef(parsed.ref, Date.now())
  if (!pending) {
    throw simError("qr_not_found", `no client is showing the QR code ${parsed.ref} (expired or never shown)`)
  }
  if (!pending.noiseKey.equals(parsed.noiseKey) || !pending.keys.identityKey.equals(parsed.identityKey)) {
    throw simError("qr_mismatch", "the QR code's keys are not the keys of the client that showed it")
  }
  // Scanned once: nobody else may scan this client's codes (or type its pairing code) while it pairs.
  registry.removePending(pending.socket.id)
  return completePairing(registry, pending, phone, parsed.advSecret, pairingTimeoutMs)
}

/**
 * The user types `typedCode` on the phone of `phoneNumber` for the newest client that asked to be linked to it by code.
 * The phone answers with `primary_hello`, opens the key bundle in the client's `companion_finish` and, when the code
 * was the client's, links it as a scan does. A wrong code links nothing; the request stays pending, so the user can
 * type the code again.
 */
export const enterCode = async (
  registry: Registry,
  phoneNumber: string,
  typedCode: string,
  pairingTimeoutMs: number
): Promise<{ readonly jid: string }> => {
  const phone = validatePhoneNumber(phoneNumber)
  if (typeof phone !== "string") throw phone
  const code = normalizeCode(typedCode)
  if (!code) throw simError("invalid_request", "code must be the 8 letters and digits the client shows (ABCD-EFGH)")
  const request = registry.codeRequestFor(phone, Date.now())
  if (!request) {
    throw simError("pairing_not_found", `no client is waiting for a pairing code for ${phone} (expired or never asked)`)
  }
  // Claimed: no scan and no other code entry for this client while the phone talks to it.
  const registration = request.registration
  registry.removePending(registration.socket.id)
  const account = registry.ensureAccount(phone)
  const primaryEphemeral = Curve.generateKeyPair()
  let advSecret: Buffer | undefined
  try {
    const companionEphemeral = await unwrapCompanionEphemeral(request.wrappedEphemeral, code)
    const hello = await primaryHello(
      { ref: request.ref, phoneNumber: phone, code },
      account.identity.public,
      primaryEphemeral
    )
    const finished = registration.socket.awaitStanza(
      (stanza) => linkCodeStage(stanza) === "companion_finish",
      pairingTimeoutMs
    )
    registration.socket.send(hello)
    const finish = await finished
    // WhatsApp accepts companion_finish before the phone looks inside (the bundle is end to end encrypted), and a
    // phone that cannot open it tells the companion nothing: so does the sim.
    registration.socket.send(iqResult(finish))
    advSecret = openCompanionFinish(finish, {
      ref: request.ref,
      companionEphemeral,
      primaryEphemeral,
      primaryIdentity: account.identity,
      companionIdentity: registration.keys.identityKey
    })
  } catch (error) {
    registry.restorePending(request)
    throw simError("pairing_failed", `the client did not answer the phone's primary_hello: ${String(error)}`, error)
  }
  if (!advSecret) {
    registry.restorePending(request)
    throw simError(
      "wrong_pairing_code",
      `${typedCode} is not the code the client shows for ${phone}; nothing was linked`
    )
  }
  return completePairing(registry, registration, phone, advSecret, pairingTimeoutMs)
}

/**
 * What follows a scan or a typed code: `pair-success` MACed with the adv secret the client holds, the client's
 * signature over it, the device record, and a 515 that makes the client log in as the new device.
 */
const completePairing = async (
  registry: Registry,
  pending: PendingRegistration,
  phone: string,
  advSecret: Buffer,
  pairingTimeoutMs: number
): Promise<{ readonly jid: string }> => {
  const account = registry.ensureAccount(phone)
  const deviceId = registry.allocateDeviceId(account)
  const target: PairingTarget = {
    account,
    deviceId,
    jid: `${phone}:${deviceId}@s.whatsapp.net`,
    lid: `${account.lidUser}:${deviceId}@lid`,
    deviceIdentityKey: pending.keys.identityKey,
    advSecret
  }
  const reply = await pending.socket.request((id) => pairSuccess(target, id), pairingTimeoutMs).catch((error) => {
    throw simError("pairing_failed", `the client did not confirm the pairing: ${String(error)}`, error)
  })
  if (!verifyPairDeviceSign(reply, target)) {
    pending.socket.closeWith(loginFailure())
    throw simError("pairing_failed", "the client's pair-device-sign did not verify")
  }
  registry.link({
    jid: target.jid,
    lid: target.lid,
    phoneNumber: phone,
    deviceId,
    keyIndex: deviceId,
    noiseKey: pending.noiseKey,
    platform: pending.platform,
    linkedAt: Date.now(),
    keys: pending.keys
  })
  pending.socket.closeWith(streamError.restartRequired())
  return { jid: target.jid }
}

const knownDevice = (registry: Registry, jid: string) => {
  const device = registry.device(jid)
  if (!device) throw simError("device_not_found", `no linked device ${jid}`)
  return device
}

/** Unlinks the device (as "Log out" on the phone does): its live socket gets 401, and so does every later login. */
export const logout = (registry: Registry, jid: string): void => {
  knownDevice(registry, jid)
  registry.unlink(jid)?.closeWith(streamError.loggedOut())
}

/** The device logged in elsewhere: its live socket gets 440, the device stays linked. */
export const conflict = (registry: Registry, jid: string): boolean => {
  knownDevice(registry, jid)
  const socket = registry.liveSocket(jid)
  socket?.closeWith(streamError.conflict())
  return socket !== undefined
}

/** The network drops the device's TCP connection: no stream error, no close frame. */
/** Turns the device's live connection into a black hole (see ChatSocket.stall); false when it has none. */
export const stall = (registry: Registry, jid: string): boolean => {
  knownDevice(registry, jid)
  const socket = registry.liveSocket(jid)
  socket?.stall()
  return socket !== undefined
}

export const drop = (registry: Registry, jid: string): boolean => {
  knownDevice(registry, jid)
  const socket = registry.liveSocket(jid)
  socket?.terminate()
  return socket !== undefined
}
