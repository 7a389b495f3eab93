/**
 * What a shard lease holds in the KV bucket `wa_shards`: key `shard.<n>`, value `{nodeId, epoch}`.
 */
import { type Option, Schema } from "effect"

export const SHARDS_BUCKET = "wa_shards"
export const leaseKey = (shard: number): string => `shard.${shard}`

export class LeaseValue extends Schema.Class<LeaseValue>("LeaseValue")({
  nodeId: Schema.String,
  /** The revision at which the lease was acquired; null only in the acquiring write itself. */
  epoch: Schema.NullOr(Schema.Number)
}) {}
const LeaseJson = Schema.parseJson(LeaseValue)
export const encodeLease = (value: LeaseValue): Uint8Array =>
  new TextEncoder().encode(Schema.encodeSync(LeaseJson)(value))
export const decodeLease = (bytes: Uint8Array): Option.Option<LeaseValue> =>
  Schema.decodeUnknownOption(LeaseJson)(new TextDecoder().decode(bytes))
