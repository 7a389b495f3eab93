/**
 * What the control API does as "the phone and the network": scan a QR code, unlink a device, log a device in
 * somewhere else (conflict) and cut its connection.
 */
import { simError, type WaSimError } from "../WaSimError.js"
import { loginFailure, streamError } from "./ChatConnection.js"
import { type PairingTarget, pairSuccess, parseQr, verifyPairDeviceSign } from "./pairing.js"
import type { Registry } from "./Registry.js"

const PHONE_NUMBER = /^[1-9][0-9]{5,14}$/

export const validatePhoneNumber = (phoneNumber: string): string | WaSimError =>
  PHONE_NUMBER.test(phoneNumber)
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
  // Scanned once: nobody else may scan this client's codes while it pairs.
  registry.removePending(pending.socket.id)
  const account = registry.ensureAccount(phone)
  const deviceId = registry.allocateDeviceId(account)
  const target: PairingTarget = {
    account,
    deviceId,
    jid: `${phone}:${deviceId}@s.whatsapp.net`,
    lid: `${account.lidUser}:${deviceId}@lid`,
    deviceIdentityKey: pending.keys.identityKey,
    advSecret: parsed.advSecret
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
export const drop = (registry: Registry, jid: string): boolean => {
  knownDevice(registry, jid)
  const socket = registry.liveSocket(jid)
  socket?.terminate()
  return socket !== undefined
}
