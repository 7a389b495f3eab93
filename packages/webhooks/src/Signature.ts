/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com), the scheme the `standardwebhooks` and `svix`
 * libraries verify: a secret `whsec_<base64 key>`, and for each request
 * `webhook-signature: v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`, one signature per
 * secret in use, separated by spaces (during a rotation both the new and the previous secret sign).
 */
import { createHmac, randomBytes } from "node:crypto"

export const SECRET_PREFIX = "whsec_"
const KEY_BYTES = 32

/** A new signing secret: 256 random bits. */
export const newSecret = (): string => `${SECRET_PREFIX}${randomBytes(KEY_BYTES).toString("base64")}`

const keyOf = (secret: string): Buffer => Buffer.from(secret.slice(SECRET_PREFIX.length), "base64")

export const sign = (secret: string, webhookId: string, timestamp: number, body: string): string =>
  `v1,${createHmac("sha256", keyOf(secret)).update(`${webhookId}.${timestamp}.${body}`).digest("base64")}`

/** The three headers of a delivery; `secrets` are the secrets in use, the current one first. */
export const headers = (
  secrets: ReadonlyArray<string>,
  webhookId: string,
  timestamp: number,
  body: string
): Record<string, string> => ({
  "webhook-id": webhookId,
  "webhook-timestamp": String(timestamp),
  "webhook-signature": secrets.map((secret) => sign(secret, webhookId, timestamp, body)).join(" ")
})
