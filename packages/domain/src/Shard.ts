/**
 * Sessions are grouped into a fixed number of shards; ownership moves by shard, never by session.
 */
import { Schema } from "effect"

export const ShardNumber = Schema.Int.pipe(Schema.nonNegative(), Schema.brand("ShardNumber"))
export type ShardNumber = typeof ShardNumber.Type

const utf8 = new TextEncoder()

/** 32-bit FNV-1a over the UTF-8 bytes; stable across processes, machines and versions. */
export const fnv1a32 = (text: string): number => {
  let hash = 0x811c9dc5
  for (const byte of utf8.encode(text)) {
    hash ^= byte
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

/** A non-negative integer for any positive `shards` (ClusterConfig checks it), so it is not checked again. */
export const shardOf = (sessionId: string, shards: number): ShardNumber =>
  ShardNumber.make(fnv1a32(sessionId) % shards, { disableValidation: true })
