/**
 * Rendezvous (highest-random-weight) hashing: every node computes the same owner for every shard
 * from the same member list, with no coordinator; adding or removing a node moves about 1/N shards.
 */
import { fnv1a32 } from "@wacluster/domain/Shard"

/** murmur3's 32-bit finalizer: spreads FNV's weak low bits so weights are well distributed. */
const fmix32 = (input: number): number => {
  let h = input >>> 0
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

export const weight = (shard: number, nodeId: string): number =>
  fmix32(fnv1a32(nodeId) ^ Math.imul(shard + 1, 0x9e3779b1))

/** The desired owner of `shard` among `nodeIds`, or undefined when there is no node. */
export const ownerOf = (shard: number, nodeIds: ReadonlyArray<string>): string | undefined => {
  let best: string | undefined
  let bestWeight = -1
  for (const nodeId of nodeIds) {
    const w = weight(shard, nodeId)
    // Ties (practically impossible) are broken by id so every node still agrees.
    if (w > bestWeight || (w === bestWeight && best !== undefined && nodeId < best)) {
      best = nodeId
      bestWeight = w
    }
  }
  return best
}
