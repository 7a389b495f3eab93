/**
 * Linking by phone number: the companion shows an 8-character code, the user types it on the phone, and the two
 * agree on the adv secret through two ephemeral keys, each wrapped under a key derived from the code. The server only
 * relays. The byte layouts mirror Baileys' `requestPairingCode` (`Socket/socket.js`) and its
 * `link_code_companion_reg` notification handler (`Socket/messages-recv.js`).
 *
 *   companion → server   iq `companion_hello`: phone jid, salt‖iv‖AES-CTR(companion ephemeral pub, code key)
 *   server → phone       (push) the user types the code
 *   server → companion   notification `primary_hello`: ref, identity pub, salt‖iv‖AES-CTR(primary ephemeral pub)
 *   companion → server   iq `companion_finish`: salt‖iv‖AES-GCM(companion identity‖primary identity‖random)
 *   server → companion   pair-success, exactly as after a QR scan, MACed with the adv secret both sides derived
 */
import {
  aesDecryptCTR,
  aesDecryptGCM,
  aesEncryptCTR,
  Curve,
  derivePairingCodeKey,
  hkdf,
  type KeyPair
} from "@whiskeysockets/baileys"
import { randomBytes } from "node:crypto"
import { type BinaryNode, child, childBytes, iqResult, isPhoneNumber, node, SERVER, unixSeconds } from "./nodes.js"

const STAGE_NODE = "link_code_companion_reg"
const SALT_LENGTH = 32
const CTR_IV_LENGTH = 16
const GCM_IV_LENGTH = 12
const KEY_LENGTH = 32

/** The stage of a `link_code_companion_reg` iq (`companion_hello`, `companion_finish`), if it is one. */
export const linkCodeStage = (stanza: BinaryNode): string | undefined =>
  stanza.tag === "iq" && stanza.attrs.xmlns === "md" ? child(stanza, STAGE_NODE)?.attrs.stage : undefined

export interface CompanionHello {
  /** The user part of the `jid` the companion wants to be linked to. */
  readonly phoneNumber: string
  /** salt(32) ‖ iv(16) ‖ AES-CTR(companion ephemeral public key) under the code key. */
  readonly wrappedEphemeral: Buffer
  /** `companion_server_auth_key_pub`: the companion's static Noise key. */
  readonly noiseKey: Buffer
}

export const parseCompanionHello = (iq: BinaryNode): CompanionHello | undefined => {
  const registration = child(iq, STAGE_NODE)
  const jid = registration?.attrs.jid ?? ""
  const at = jid.indexOf("@")
  const wrappedEphemeral = childBytes(registration, "link_code_pairing_wrapped_companion_ephemeral_pub")
  const noiseKey = childBytes(registration, "companion_server_auth_key_pub")
  if (jid.slice(at + 1) !== SERVER || !isPhoneNumber(jid.slice(0, at))) return undefined
  if (wrappedEphemeral?.length !== SALT_LENGTH + CTR_IV_LENGTH + KEY_LENGTH || noiseKey?.length !== KEY_LENGTH) {
    return undefined
  }
  return { phoneNumber: jid.slice(0, at), wrappedEphemeral, noiseKey }
}

/** The server's answer to `companion_hello`: the ref that names this code pairing from now on. */
export const companionHelloResult = (iq: BinaryNode, ref: string): BinaryNode =>
  iqResult(iq, [node(STAGE_NODE, {}, [node("link_code_pairing_ref", {}, Buffer.from(ref))])])

/**
 * The code as the companion derives its key from it: Baileys shows 8 Crockford characters (no 0, I, O or U),
 * uppercase; people type them in either case, often as `ABCD-EFGH`. A custom code (`requestPairingCode(phone, code)`)
 * may also use 0, I, O and U.
 */
export const normalizeCode = (typed: string): string | undefined => {
  const code = typed.replace(/[\s-]/g, "").toUpperCase()
  return /^[0-9A-Z]{8}$/.test(code) ? code : undefined
}

const wrapKey = async (publicKey: Uint8Array, code: string): Promise<Buffer> => {
  const salt = randomBytes(SALT_LENGTH)
  const iv = randomBytes(CTR_IV_LENGTH)
  return Buffer.concat([salt, iv, aesEncryptCTR(publicKey, await derivePairingCodeKey(code, salt), iv)])
}

/**
 * The companion's ephemeral public key as the phone reads it with the code its user typed. AES-CTR has no tag: a wrong
 * code yields 32 other bytes, which only show up as wrong when the companion's key bundle does not open.
 */
export const unwrapCompanionEphemeral = async (wrapped: Buffer, code: string): Promise<Buffer> => {
  const salt = wrapped.subarray(0, SALT_LENGTH)
  const iv = wrapped.subarray(SALT_LENGTH, SALT_LENGTH + CTR_IV_LENGTH)
  const payload = wrapped.subarray(SALT_LENGTH + CTR_IV_LENGTH, SALT_LENGTH + CTR_IV_LENGTH + KEY_LENGTH)
  return aesDecryptCTR(payload, await derivePairingCodeKey(code, salt), iv)
}

/** What the phone sends once its user typed the code: its identity key and its own ephemeral key, wrapped. */
export const primaryHello = async (
  input: { readonly ref: string; readonly phoneNumber: string; readonly code: string },
  primaryIdentity: Uint8Array,
  primaryEphemeral: KeyPair
): Promise<BinaryNode> =>
  node("notification", {
    from: SERVER,
    type: STAGE_NODE,
    id: randomBytes(8).toString("hex").toUpperCase(),
    t: unixSeconds()
  }, [
    node(STAGE_NODE, { jid: `${input.phoneNumber}@${SERVER}`, stage: "primary_hello" }, [
      node("link_code_pairing_wrapped_primary_ephemeral_pub", {}, await wrapKey(primaryEphemeral.public, input.code)),
      node("primary_identity_pub", {}, Buffer.from(primaryIdentity)),
      node("link_code_pairing_ref", {}, Buffer.from(input.ref))
    ])
  ])

export interface FinishKeys {
  readonly ref: string
  /** The companion's ephemeral public key as unwrapped with the typed code. */
  readonly companionEphemeral: Buffer
  readonly primaryEphemeral: KeyPair
  /** The account (ADV) identity key pair of the phone. */
  readonly primaryIdentity: KeyPair
  /** The companion's identity key from its registration payload. */
  readonly companionIdentity: Buffer
}

/**
 * Opens the companion's key bundle as the phone does and derives the adv secret the companion derived. Undefined when
 * the bundle does not open (the typed code was not the companion's) or does not hold the keys both sides expect.
 */
export const openCompanionFinish = (finish: BinaryNode, keys: FinishKeys): Buffer | undefined => {
  const registration = child(finish, STAGE_NODE)
  const bundle = childBytes(registration, "link_code_pairing_wrapped_key_bundle")
  const identity = childBytes(registration, "companion_identity_public")
  const ref = childBytes(registration, "link_code_pairing_ref")
  if (!bundle || !identity || !ref || ref.toString() !== keys.ref || !identity.equals(keys.companionIdentity)) {
    return undefined
  }
  if (bundle.length <= SALT_LENGTH + GCM_IV_LENGTH) return undefined
  const companionShared = Curve.sharedKey(keys.primaryEphemeral.private, keys.companionEphemeral)
  const bundleKey = hkdf(companionShared, KEY_LENGTH, {
    salt: bundle.subarray(0, SALT_LENGTH),
    info: "link_code_pairing_key_bundle_encryption_key"
  })
  let payload: Buffer
  try {
    payload = aesDecryptGCM(
      bundle.subarray(SALT_LENGTH + GCM_IV_LENGTH),
      bundleKey,
      bundle.subarray(SALT_LENGTH, SALT_LENGTH + GCM_IV_LENGTH),
      Buffer.alloc(0)
    )
  } catch {
    return undefined
  }
  if (payload.length !== 3 * KEY_LENGTH) return undefined
  const companionIdentity = payload.subarray(0, KEY_LENGTH)
  const primaryIdentity = payload.subarray(KEY_LENGTH, 2 * KEY_LENGTH)
  if (!companionIdentity.equals(keys.companionIdentity) || !primaryIdentity.equals(keys.primaryIdentity.public)) {
    return undefined
  }
  const identityShared = Curve.sharedKey(keys.primaryIdentity.private, keys.companionIdentity)
  const random = payload.subarray(2 * KEY_LENGTH)
  return Buffer.from(hkdf(Buffer.concat([companionShared, identityShared, random]), KEY_LENGTH, { info: "adv_secret" }))
}
