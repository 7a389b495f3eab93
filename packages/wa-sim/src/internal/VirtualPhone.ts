/**
 * An account's primary device (device 0, "the phone") as a Signal party: its identity is the account key that also
 * signs linked devices, it hands out prekey bundles like WhatsApp's key server, and it encrypts and decrypts with
 * Baileys' own Signal repository, so the sim speaks exactly the protocol the client speaks.
 * Sessions live in memory only: after a restart of the sim a contact starts new sessions.
 */
import {
  Curve,
  DEFAULT_CONNECTION_CONFIG,
  encodeWAMessage,
  generateRegistrationId,
  proto,
  type SignalRepositoryWithLIDStore,
  signedKeyPair,
  unpadRandomMax16
} from "@whiskeysockets/baileys"
import { memoryKeyStore } from "./memoryKeys.js"
import type { Account, KeyBundle } from "./model.js"
import { silentLogger } from "./silentLogger.js"

export type CipherType = "pkmsg" | "msg"

export class VirtualPhone {
  readonly registrationId = generateRegistrationId()
  readonly signedPreKey: ReturnType<typeof signedKeyPair>
  private readonly keys = memoryKeyStore()
  private readonly repository: SignalRepositoryWithLIDStore
  private nextPreKeyId = 1

  constructor(readonly account: Account) {
    this.signedPreKey = signedKeyPair(account.identity, 1)
    this.repository = DEFAULT_CONNECTION_CONFIG.makeSignalRepository(
      {
        creds: {
          signedIdentityKey: account.identity,
          signedPreKey: this.signedPreKey,
          registrationId: this.registrationId
        },
        keys: this.keys
      },
      silentLogger
    )
  }

  /** A bundle with a fresh one-time prekey, as WhatsApp's key server answers for this phone. */
  async takeBundle(): Promise<KeyBundle> {
    const id = this.nextPreKeyId++
    const preKey = Curve.generateKeyPair()
    await this.keys.set({ "pre-key": { [id.toString()]: preKey } })
    return {
      registrationId: this.registrationId,
      identityKey: Buffer.from(this.account.identity.public),
      signedPreKey: {
        id: this.signedPreKey.keyId,
        publicKey: Buffer.from(this.signedPreKey.keyPair.public),
        signature: Buffer.from(this.signedPreKey.signature)
      },
      preKeys: new Map([[id, Buffer.from(preKey.public)]])
    }
  }

  /**
   * Encrypts to a device, starting a session from `bundle` (and one of its one-time prekeys) when there is none.
   * `takeBundle` is only called when a session has to be made.
   */
  async encrypt(
    deviceJid: string,
    message: proto.IMessage,
    takeBundle: () => KeyBundle
  ): Promise<{ readonly type: CipherType; readonly ciphertext: Buffer }> {
    const session = await this.repository.validateSession(deviceJid)
    if (!session.exists) {
      const bundle = takeBundle()
      const [preKey] = bundle.preKeys
      await this.repository.injectE2ESession({
        jid: deviceJid,
        session: {
          registrationId: bundle.registrationId,
          identityKey: signalKey(bundle.identityKey),
          signedPreKey: {
            keyId: bundle.signedPreKey.id,
            publicKey: signalKey(bundle.signedPreKey.publicKey),
            signature: bundle.signedPreKey.signature
          },
          ...(preKey ? { preKey: { keyId: preKey[0], publicKey: signalKey(preKey[1]) } } : {})
        }
      })
    }
    const { ciphertext, type } = await this.repository.encryptMessage({
      jid: deviceJid,
      data: encodeWAMessage(message)
    })
    return { type: type === "pkmsg" ? "pkmsg" : "msg", ciphertext: Buffer.from(ciphertext) }
  }

  async decrypt(deviceJid: string, type: CipherType, ciphertext: Uint8Array): Promise<proto.Message> {
    const padded = await this.repository.decryptMessage({ jid: deviceJid, type, ciphertext })
    return proto.Message.decode(unpadRandomMax16(padded))
  }
}

const signalKey = (key: Uint8Array): Buffer =>
  key.length === 33 ? Buffer.from(key) : Buffer.concat([Buffer.from([5]), key])
