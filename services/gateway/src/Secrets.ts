/**
 * Bearer secrets (tenant tokens, API keys): 256 random bits in base62 behind a recognisable prefix, stored
 * only as SHA-256 hashes and compared by hash lookup (the hash of a guess reveals nothing about a real key).
 */
import { randomBase62 } from "@wacluster/domain/Ids"
import { createHash, timingSafeEqual } from "node:crypto"

/** 43 base62 characters carry just over 256 bits. */
const SECRET_LENGTH = 43

export const TENANT_TOKEN_PREFIX = "wat_"
export const API_KEY_PREFIX = "wak_"
/** How much of a key is shown in listings so a tenant can recognise it. */
export const VISIBLE_PREFIX = API_KEY_PREFIX.length + 8

export const newSecret = (prefix: string): string => `${prefix}${randomBase62(SECRET_LENGTH)}`

export const hashSecret = (secret: string): Uint8Array => createHash("sha256").update(secret, "utf8").digest()

/** Constant-time equality for secrets compared directly (the admin token). */
export const secretsEqual = (a: string, b: string): boolean => {
  const left = createHash("sha256").update(a, "utf8").digest()
  const right = createHash("sha256").update(b, "utf8").digest()
  return timingSafeEqual(left, right)
}

export const looksLike = (secret: string, prefix: string): boolean =>
  secret.length === prefix.length + SECRET_LENGTH && secret.startsWith(prefix)
