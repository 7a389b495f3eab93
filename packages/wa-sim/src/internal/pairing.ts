/**
 * What the phone does when it scans a QR code: it signs the new device's identity key with the account key (ADV,
 * "account device verification"), MACs the result with the adv secret from the QR code, and WhatsApp delivers it in
 * `pair-success`. The device answers with its own signature over the same details, which the sim checks.
 * The byte layouts mirror `configureSuccessfulPairing` in Baileys' `Utils/validate-connection.js`.
 */
import { Curve, hmacSign, proto, WA_ADV_ACCOUNT_SIG_PREFIX, WA_ADV_DEVICE_SIG_PREFIX } from "@whiskeysockets/baileys"
import { randomInt } from "node:crypto"
import type { Account } from "./model.js"
import { type BinaryNode, bytes, child, node, SERVER, unixSeconds } from "./nodes.js"

export interface PairingTarget {
  readonly account: Account
  readonly deviceId: number
  readonly jid: string
  readonly lid: string
  /** The device's identity key from its registration payload (32 bytes). */
  readonly deviceIdentityKey: Buffer
  readonly advSecret: Buffer
}

export const pairSuccess = (target: PairingTarget, iqId: string): BinaryNode => {
  const details = proto.ADVDeviceIdentity.encode({
    rawId: randomInt(1, 2 ** 31),
    timestamp: Math.floor(Date.now() / 1000),
    keyIndex: target.deviceId,
    accountType: proto.ADVEncryptionType.E2EE,
    deviceType: proto.ADVEncryptionType.E2EE
  }).finish()
  const accountSignature = Curve.sign(
    target.account.identity.private,
    Buffer.concat([WA_ADV_ACCOUNT_SIG_PREFIX, details, target.deviceIdentityKey])
  )
  const signedIdentity = proto.ADVSignedDeviceIdentity.encode({
    details,
    accountSignatureKey: target.account.identity.public,
    accountSignature
  }).finish()
  const identityHmac = proto.ADVSignedDeviceIdentityHMAC.encode({
    details: signedIdentity,
    hmac: hmacSign(signedIdentity, target.advSecret),
    accountType: proto.ADVEncryptionType.E2EE
  }).finish()
  return node("iq", { from: SERVER, type: "set", id: iqId, xmlns: "md", t: unixSeconds() }, [
    node("pair-success", {}, [
      node("device-identity", {}, identityHmac),
      node("platform", { name: "android" }),
      node("device", { jid: target.jid, lid: target.lid })
    ])
  ])
}

/**
 * Checks the device's answer to `pair-success`: a `pair-device-sign` whose identity carries the account signature
 * the phone made and a device signature by the device's own identity key.
 */
export const verifyPairDeviceSign = (reply: BinaryNode, target: PairingTarget): boolean => {
  if (reply.attrs.type !== "result") return false
  const signed = bytes(child(child(reply, "pair-device-sign"), "device-identity"))
  if (!signed) return false
  const identity = proto.ADVSignedDeviceIdentity.decode(signed)
  const { details, accountSignature, deviceSignature } = identity
  if (!details || !accountSignature || !deviceSignature) return false
  const accountKey = target.account.identity.public
  const accountValid = Curve.verify(
    accountKey,
    Buffer.concat([WA_ADV_ACCOUNT_SIG_PREFIX, details, target.deviceIdentityKey]),
    accountSignature
  )
  const deviceValid = Curve.verify(
    target.deviceIdentityKey,
    Buffer.concat([WA_ADV_DEVICE_SIG_PREFIX, details, target.deviceIdentityKey, accountKey]),
    deviceSignature
  )
  return accountValid && deviceValid
}

/** Parses a QR string as Baileys shows it (`https://wa.me/settings/linked_devices#ref,noise,identity,adv[,platform]`). */
export const parseQr = (
  qr: string
):
  | { readonly ref: string; readonly noiseKey: Buffer; readonly identityKey: Buffer; readonly advSecret: Buffer }
  | undefined =>
{
  const hash = qr.indexOf("#")
  const parts = (hash >= 0 ? qr.slice(hash + 1) : qr).split(",")
  const [ref, noise, identity, adv] = parts
  if (ref === undefined || noise === undefined || identity === undefined || adv === undefined) return undefined
  if (ref.length === 0) return undefined
  const decode = (value: string) => {
    const decoded = Buffer.from(value, "base64")
    return decoded.length === 32 && decoded.toString("base64") === value ? decoded : undefined
  }
  const noiseKey = decode(noise)
  const identityKey = decode(identity)
  const advSecret = decode(adv)
  if (!noiseKey || !identityKey || !advSecret) return undefined
  return { ref, noiseKey, identityKey, advSecret }
}
