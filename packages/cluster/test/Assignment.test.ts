import { describe, expect, it } from "@effect/vitest"
import { ownerOf } from "../src/Assignment.js"

const shards = Array.from({ length: 256 }, (_, i) => i)
const countBy = (nodes: ReadonlyArray<string>) => {
  const counts = new Map<string, number>()
  for (const shard of shards) {
    const owner = ownerOf(shard, nodes)
    if (owner !== undefined) counts.set(owner, (counts.get(owner) ?? 0) + 1)
  }
  return counts
}

describe("Assignment (rendezvous hashing)", () => {
  it("gives every shard to exactly one node, the same whatever the order of the member list", () => {
    const nodes = ["node-1", "node-2", "node-3"]
    for (const shard of shards) {
      expect(ownerOf(shard, nodes)).toBe(ownerOf(shard, [...nodes].reverse()))
      expect(nodes).toContain(ownerOf(shard, nodes))
    }
  })

  it("has no owner without nodes", () => {
    expect(ownerOf(7, [])).toBeUndefined()
  })

  it("spreads 256 shards evenly enough over 2, 3 and 5 nodes", () => {
    for (const n of [2, 3, 5]) {
      const nodes = Array.from({ length: n }, (_, i) => `node-${i + 1}`)
      const counts = countBy(nodes)
      expect(counts.size).toBe(n)
      for (const count of counts.values()) {
        // Within ±35% of the fair share: rendezvous is random-like, not perfectly balanced.
        expect(count).toBeGreaterThan((256 / n) * 0.65)
        expect(count).toBeLessThan((256 / n) * 1.35)
      }
    }
  })

  it("moves only the shards the new node takes when a node joins, and only the leaver's when one leaves", () => {
    const before = ["node-1", "node-2", "node-3"]
    const after = [...before, "node-4"]
    let moved = 0
    for (const shard of shards) {
      const was = ownerOf(shard, before)
      const is = ownerOf(shard, after)
      if (was !== is) {
        expect(is).toBe("node-4")
        moved++
      }
      // And back: removing node-4 restores exactly the old owner.
      expect(ownerOf(shard, before)).toBe(was)
    }
    expect(moved).toBeGreaterThan(256 / 4 * 0.6)
    expect(moved).toBeLessThan(256 / 4 * 1.4)
  })
})
