/**
 * The sim's certificate chain: a root key pair (what WhatsApp pins as `WA_CERT_DETAILS.PUBLIC_KEY`) signs an
 * intermediate certificate, which signs the leaf naming the server's static Noise key. Clients of the sim pin the
 * sim's root instead of WhatsApp's.
 */
import { Curve, type KeyPair, proto, WA_CERT_DETAILS } from "@whiskeysockets/baileys"

const YEAR_SECONDS = 365 * 24 * 3600

export interface ServerIdentity {
  readonly root: KeyPair
  readonly serverStatic: KeyPair
  /** Encoded `CertChain`, sent encrypted in every server hello. */
  readonly certificateChain: Uint8Array
}

export const makeServerIdentity = (root: KeyPair): ServerIdentity => {
  const intermediate = Curve.generateKeyPair()
  const serverStatic = Curve.generateKeyPair()
  const now = Math.floor(Date.now() / 1000)
  const intermediateDetails = proto.CertChain.NoiseCertificate.Details.encode({
    serial: 1,
    // Baileys compares this to WA_CERT_DETAILS.SERIAL, which the sim leaves as it is.
    issuerSerial: WA_CERT_DETAILS.SERIAL,
    key: intermediate.public,
    notBefore: now - YEAR_SECONDS,
    notAfter: now + 10 * YEAR_SECONDS
  }).finish()
  const leafDetails = proto.CertChain.NoiseCertificate.Details.encode({
    serial: 2,
    issuerSerial: 1,
    key: serverStatic.public,
    notBefore: now - YEAR_SECONDS,
    notAfter: now + YEAR_SECONDS
  }).finish()
  const certificateChain = proto.CertChain.encode({
    intermediate: { details: intermediateDetails, signature: Curve.sign(root.private, intermediateDetails) },
    leaf: { details: leafDetails, signature: Curve.sign(intermediate.private, leafDetails) }
  }).finish()
  return { root, serverStatic, certificateChain }
}
