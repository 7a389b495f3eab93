/**
 * Branded identifiers. Every id is a lowercase prefix, an underscore and 20 random base62 characters,
 * so ids of different kinds can never be confused and are safe in NATS subjects and URLs.
 */
import { Effect, Schema } from "effect"

const BODY = 20
const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/**
 * The platform's CSPRNG, drawn 4 KB at a time as Node's own randomUUID does: a draw per id cost several times more
 * than the rest of making it, and every queued text gets one.
 */
const pool = new Uint8Array(4096)
let pooled = 0
const randomByte = (): number => {
  if (pooled === 0) {
    globalThis.crypto.getRandomValues(pool)
    pooled = pool.length
  }
  // Always in range; were it not, 255 would be redrawn.
  return pool[--pooled] ?? 255
}

/** Random base62 text from the platform's CSPRNG (no modulo bias: bytes ≥ 248 are redrawn). */
export const randomBase62 = (length: number): string => {
  let out = ""
  while (out.length < length) {
    const byte = randomByte()
    if (byte < 248) out += ALPHABET[byte % 62]
  }
  return out
}

/** What an id with this prefix looks like (for a check without a Schema decode, on a hot path). */
export const idPattern = (prefix: string): RegExp => new RegExp(`^${prefix}_[0-9A-Za-z]{${BODY}}$`)

const prefixedId = <const Brand extends string>(prefix: string, brand: Brand, title: string) =>
  Schema.String.pipe(
    Schema.pattern(idPattern(prefix), {
      message: () => `must be a ${title} such as ${prefix}_${"x".repeat(BODY)}`
    }),
    Schema.brand(brand),
    Schema.annotations({ title, description: `${title}: "${prefix}_" followed by ${BODY} letters or digits` })
  )

export const SessionId = prefixedId("sess", "SessionId", "session id")
export type SessionId = typeof SessionId.Type

export const TenantId = prefixedId("ten", "TenantId", "tenant id")
export type TenantId = typeof TenantId.Type

export const ApiKeyId = prefixedId("key", "ApiKeyId", "API key id")
export type ApiKeyId = typeof ApiKeyId.Type

export const EventId = prefixedId("evt", "EventId", "event id")
export type EventId = typeof EventId.Type

export const MessageId = prefixedId("msg", "MessageId", "message id")
export type MessageId = typeof MessageId.Type

export const WebhookId = prefixedId("wh", "WebhookId", "webhook id")
export type WebhookId = typeof WebhookId.Type

export const DeliveryId = prefixedId("dlv", "DeliveryId", "delivery id")
export type DeliveryId = typeof DeliveryId.Type

/** A node names itself (config `NODE_ID`); it appears in NATS KV keys, so it is restricted to a safe charset. */
export const NodeId = Schema.String.pipe(
  Schema.pattern(/^[a-z0-9][a-z0-9-]{0,62}$/, {
    message: () => "must be 1-63 lowercase letters, digits or dashes, starting with a letter or digit"
  }),
  Schema.brand("NodeId"),
  Schema.annotations({ title: "node id" })
)
export type NodeId = typeof NodeId.Type

/** A new id is well-formed by construction: making it skips the pattern check (one per queued text, per event). */
const NEW = { disableValidation: true } as const
export const makeSessionId = Effect.sync(() => SessionId.make(`sess_${randomBase62(BODY)}`, NEW))
export const makeTenantId = Effect.sync(() => TenantId.make(`ten_${randomBase62(BODY)}`, NEW))
export const makeApiKeyId = Effect.sync(() => ApiKeyId.make(`key_${randomBase62(BODY)}`, NEW))
export const makeMessageId = Effect.sync(() => MessageId.make(`msg_${randomBase62(BODY)}`, NEW))
export const makeWebhookId = Effect.sync(() => WebhookId.make(`wh_${randomBase62(BODY)}`, NEW))
export const makeDeliveryId = Effect.sync(() => DeliveryId.make(`dlv_${randomBase62(BODY)}`, NEW))
export const makeEventId = Effect.sync(() => EventId.make(`evt_${randomBase62(BODY)}`, NEW))
