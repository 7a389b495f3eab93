/**
 * Our patch of libsignal's key generation (patches/libsignal@6.0.0.patch) reads the raw X25519 keys from a JWK
 * instead of DER. These tests hold it to what the rest of the signal code needs: a public key in libsignal's
 * 33-byte form that belongs to the private key, and agreements that match both ways.
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
