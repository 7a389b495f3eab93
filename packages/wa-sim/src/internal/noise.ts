/**
 * The server half of WhatsApp's Noise XX handshake, mirrored step by step from Baileys' client half
 * (`Utils/noise-handler.js`): the same hash/salt/key schedule, the same GCM nonces, then a transport state whose
 * keys are the client's swapped. Frames on the wire are 3-byte big-endian length prefixed; only the client's very
 * first WebSocket message carries the intro header.
 */
import { aesDecryptGCM, aesEncryptGCM, Curve, hkdf, type KeyPair, NOISE_MODE, sha256 } from "@whiskeysockets/baileys"

const EMPTY = Buffer.alloc(0)

const nonce = (counter: number): Buffer => {
  const iv = Buffer.alloc(12)
  iv.writeUInt32BE(counter, 8)
  return iv
}

/** Symmetric state of the handshake; `encrypt`/`decrypt` authenticate their ciphertext like the client does. */
export class NoiseHandshake {
  private hash: Buffer
  private salt: Buffer
  private key: Buffer
  private counter = 0

  constructor(introHeader: Uint8Array) {
    const mode = Buffer.from(NOISE_MODE)
    this.hash = mode.byteLength === 32 ? mode : sha256(mode)
    this.salt = this.hash
    this.key = this.hash
    this.authenticate(introHeader)
  }

  authenticate(data: Uint8Array): void {
    this.hash = sha256(Buffer.concat([this.hash, data]))
  }

  mixIntoKey(data: Uint8Array): void {
    const [write, read] = this.expand(data)
    this.salt = write
    this.key = read
    this.counter = 0
  }

  encrypt(plaintext: Uint8Array): Buffer {
    const result = aesEncryptGCM(plaintext, this.key, nonce(this.counter++), this.hash)
    this.authenticate(result)
    return result
  }

  decrypt(ciphertext: Uint8Array): Buffer {
    const result = aesDecryptGCM(ciphertext, this.key, nonce(this.counter++), this.hash)
    this.authenticate(ciphertext)
    return result
  }

  /** The client's transport writes with the first half and reads with the second; the server does the opposite. */
  finish(): NoiseTransport {
    const [clientWrite, clientRead] = this.expand(EMPTY)
    return new NoiseTransport(clientRead, clientWrite)
  }

  private expand(data: Uint8Array): [Buffer, Buffer] {
    const key = Buffer.from(hkdf(Buffer.from(data), 64, { salt: this.salt, info: "" }))
    return [key.subarray(0, 32), key.subarray(32)]
  }
}

export class NoiseTransport {
  private readCounter = 0
  private writeCounter = 0

  constructor(private readonly encKey: Buffer, private readonly decKey: Buffer) {}

  encrypt(plaintext: Uint8Array): Buffer {
    return aesEncryptGCM(plaintext, this.encKey, nonce(this.writeCounter++), EMPTY)
  }

  decrypt(ciphertext: Uint8Array): Buffer {
    return aesDecryptGCM(ciphertext, this.decKey, nonce(this.readCounter++), EMPTY)
  }
}

/**
 * Runs the responder side of XX on the client hello and returns the server hello parts, plus a continuation that
 * reads the client finish.
 */
export const respondToHello = (options: {
  readonly introHeader: Uint8Array
  readonly clientEphemeral: Uint8Array
  readonly serverStatic: KeyPair
  readonly certificateChain: Uint8Array
}) => {
  const state = new NoiseHandshake(options.introHeader)
  const ephemeral = Curve.generateKeyPair()
  state.authenticate(options.clientEphemeral)
  state.authenticate(ephemeral.public)
  state.mixIntoKey(Curve.sharedKey(ephemeral.private, options.clientEphemeral))
  const staticEncrypted = state.encrypt(options.serverStatic.public)
  state.mixIntoKey(Curve.sharedKey(options.serverStatic.private, options.clientEphemeral))
  const payloadEncrypted = state.encrypt(options.certificateChain)
  return {
    serverHello: { ephemeral: ephemeral.public, static: staticEncrypted, payload: payloadEncrypted },
    /** Decrypts the client's static key and payload and switches to transport keys. Throws on a bad MAC. */
    readClientFinish: (finish: { readonly static: Uint8Array; readonly payload: Uint8Array }) => {
      const clientStatic = state.decrypt(finish.static)
      state.mixIntoKey(Curve.sharedKey(ephemeral.private, clientStatic))
      const payload = state.decrypt(finish.payload)
      return { clientStatic, payload, transport: state.finish() }
    }
  }
}

/** Reassembles 3-byte length prefixed frames from arbitrary chunks. */
export class FrameReader {
  private buffered: Buffer = EMPTY

  push(chunk: Buffer): Array<Buffer> {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk])
    const frames: Array<Buffer> = []
    while (this.buffered.length >= 3) {
      const size = this.buffered.readUIntBE(0, 3)
      if (this.buffered.length < size + 3) break
      frames.push(this.buffered.subarray(3, size + 3))
      this.buffered = this.buffered.subarray(size + 3)
    }
    return frames
  }
}

export const encodeFrame = (data: Uint8Array): Buffer => {
  const frame = Buffer.allocUnsafe(3 + data.byteLength)
  frame.writeUIntBE(data.byteLength, 0, 3)
  frame.set(data, 3)
  return frame
}

/**
 * Splits the client's intro off its first message: `WA` + 2 bytes, or `ED` + routing info + `WA` header when a
 * client carries edge routing info (the sim never hands any out, but a client reused from WhatsApp might).
 */
export const splitIntro = (first: Buffer): { readonly header: Buffer; readonly rest: Buffer } | undefined => {
  if (first.length >= 4 && first[0] === 0x57 && first[1] === 0x41) {
    return { header: first.subarray(0, 4), rest: first.subarray(4) }
  }
  if (first.length >= 7 && first[0] === 0x45 && first[1] === 0x44) {
    const routingLength = first.readUIntBE(4, 3)
    const start = 7 + routingLength
    if (first.length < start + 4) return undefined
    return { header: first.subarray(start, start + 4), rest: first.subarray(start + 4) }
  }
  return undefined
}
