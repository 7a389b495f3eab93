/**
 * AES-256-GCM for auth state at rest. Each value gets a random 12-byte IV and is stored as
 * `iv ‖ tag ‖ ciphertext`. The session id and the key name are authenticated data, so a row copied to another
 * session or key does not decrypt.
 */
import { Config, ConfigError, Context, Effect, Either, Layer, Redacted, Schema } from "effect"
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject, randomFillSync } from "node:crypto"

const IV_BYTES = 12
const TAG_BYTES = 16

/** A stored value that does not decrypt: tampered, moved to another session or key, or written under another key. */
export class AuthDecryptError extends Schema.TaggedError<AuthDecryptError>("@wacluster/store/AuthDecryptError")(
  "AuthDecryptError",
  { sessionId: Schema.String, key: Schema.String, cause: Schema.Defect }
) {
  override get message(): string {
    return `auth state "${this.key}" of session ${this.sessionId} does not decrypt ` +
      "(tampered, moved, or written under another AUTH_STATE_KEY)"
  }
}

export class AuthCipher extends Context.Tag("@wacluster/store/AuthCipher")<AuthCipher, {
  readonly encrypt: (sessionId: string, key: string, plaintext: Uint8Array) => Effect.Effect<Uint8Array>
  readonly decrypt: (sessionId: string, key: string, stored: Uint8Array) => Effect.Effect<Uint8Array, AuthDecryptError>
}>() {}

// The NUL separator keeps ("a", "b\0c") and ("a\0b", "c") apart; session ids never contain NUL.
const associatedData = (sessionId: string, key: string) => Buffer.from(`${sessionId}\u0000${key}`, "utf8")

const parseKey = (hex: string): Either.Either<KeyObject, string> =>
  /^[0-9a-fA-F]{64}$/.test(hex)
    ? Either.right(createSecretKey(Buffer.from(hex, "hex")))
    : Either.left(`must be 64 hexadecimal characters (32 bytes), got ${hex.length} characters`)

/**
 * Random IVs cut from a pool filled 4 KiB at a time: a device links with some 800 values to encrypt, and asking
 * OpenSSL for 12 random bytes at a time cost more than the encryption. Each IV is used once (copied into the value).
 */
const makeIvSource = () => {
  const pool = Buffer.alloc(IV_BYTES * 341)
  let offset = pool.length
  return () => {
    if (offset + IV_BYTES > pool.length) {
      randomFillSync(pool)
      offset = 0
    }
    offset += IV_BYTES
    return pool.subarray(offset - IV_BYTES, offset)
  }
}

export const make = (secret: KeyObject): Context.Tag.Service<AuthCipher> => {
  const nextIv = makeIvSource()
  return AuthCipher.of({
    encrypt: (sessionId, key, plaintext) =>
      Effect.sync(() => {
        const iv = nextIv()
        const cipher = createCipheriv("aes-256-gcm", secret, iv, { authTagLength: TAG_BYTES })
        cipher.setAAD(associatedData(sessionId, key))
        const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()])
        return Buffer.concat([iv, cipher.getAuthTag(), ciphertext])
      }),
    decrypt: (sessionId, key, stored) =>
      Effect.try({
        try: () => {
          if (stored.length < IV_BYTES + TAG_BYTES) throw new Error("stored value is too short")
          const decipher = createDecipheriv("aes-256-gcm", secret, stored.subarray(0, IV_BYTES), {
            authTagLength: TAG_BYTES
          })
          decipher.setAAD(associatedData(sessionId, key))
          decipher.setAuthTag(stored.subarray(IV_BYTES, IV_BYTES + TAG_BYTES))
          const plaintext = Buffer.concat([decipher.update(stored.subarray(IV_BYTES + TAG_BYTES)), decipher.final()])
          return new Uint8Array(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength)
        },
        catch: (cause) => new AuthDecryptError({ sessionId, key, cause })
      })
  })
}

const keyConfig = (config: Config.Config<Redacted.Redacted>) =>
  config.pipe(
    Config.mapOrFail((hex) =>
      Either.mapLeft(
        parseKey(Redacted.value(hex)),
        (problem) => ConfigError.InvalidData(["AUTH_STATE_KEY"], `AUTH_STATE_KEY ${problem}`)
      )
    )
  )

/** Key from `AUTH_STATE_KEY` (secret, 64 hex characters; e.g. `openssl rand -hex 32`). */
export const layerConfig = Layer.effect(
  AuthCipher,
  Effect.map(
    keyConfig(
      Config.redacted("AUTH_STATE_KEY").pipe(
        Config.withDescription("AES-256 key for auth state at rest: 64 hexadecimal characters")
      )
    ),
    make
  )
)

/** Key given directly, e.g. in tests. */
export const layerFromKey = (hex: string) =>
  Layer.effect(AuthCipher, Effect.map(keyConfig(Config.succeed(Redacted.make(hex))), make))
