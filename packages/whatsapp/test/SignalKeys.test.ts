/**
 * The key pairs behind every device's identity, signed pre-key and 812 one-time pre-keys come from libsignal's
 * curve code, which our patches touch (Curve.verify, patches/@whiskeysockets__baileys@7.0.0-rc14.patch). These tests
 * hold it to what the signal protocol needs: a public key that belongs to its private key, agreements that match
 * both ways, signatures that verify only with the signer's key.
 *
 * A faster key generation (reading the raw keys from `KeyObject.export({ format: "jwk" })` instead of DER, 4x
 * faster) was tried and dropped: on Node 20.20 with OpenSSL 3.0.19 the JWK export of X25519 keys deadlocks now
 * and then (the main thread waits on a lock forever; 3 of 5 runs of 20,000 exports hung, 0 of 5 with DER).
 */
import { describe, expect, it } from "@effect/vitest"
import { Curve } from "@whiskeysockets/baileys"
import { createPrivateKey, createPublicKey } from "node:crypto"

const PRIVATE_KEY_DER_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex")
const PUBLIC_KEY_DER_PREFIX = Buffer.from("302a300506032b656e032100", "hex")

/** The public key OpenSSL derives from a raw private key, the DER way libsignal used before the patch. */
const publicKeyOf = (privateKey: Uint8Array) =>
  createPublicKey(
    createPrivateKey({
      key: Buffer.concat([PRIVATE_KEY_DER_PREFIX, privateKey]),
      format: "der",
      type: "pkcs8"
    })
  ).export({ format: "der", type: "spki" }).subarray(PUBLIC_KEY_DER_PREFIX.length)

describe("signal key pairs", () => {
  it("belong together: the public key is the private key's own", () => {
    for (let i = 0; i < 50; i++) {
      const pair = Curve.generateKeyPair()
      expect(pair.private.length).toBe(32)
      expect(pair.public.length).toBe(32)
      expect(Buffer.from(pair.public).equals(publicKeyOf(pair.private))).toBe(true)
    }
  })

  it("agree both ways, and differ from pair to pair", () => {
    const alice = Curve.generateKeyPair()
    const bob = Curve.generateKeyPair()
    expect(Buffer.from(Curve.sharedKey(alice.private, bob.public)))
      .toEqual(Buffer.from(Curve.sharedKey(bob.private, alice.public)))
    expect(Buffer.from(alice.private).equals(Buffer.from(bob.private))).toBe(false)
  })

  it("sign and verify with a generated identity", () => {
    const identity = Curve.generateKeyPair()
    const message = Buffer.from("signed pre-key")
    const signature = Curve.sign(identity.private, message)
    expect(Curve.verify(identity.public, message, signature)).toBe(true)
    expect(Curve.verify(Curve.generateKeyPair().public, message, signature)).toBe(false)
  })
})
