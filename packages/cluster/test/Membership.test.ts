import { describe, expect, it } from "vitest"
import { silenceReference } from "../src/Membership.js"

describe("silenceReference", () => {
  const heartbeat = 1_000
  const nodeTtl = 5_000
  const seen = (...at: Array<number>) => at.map((seenAt) => ({ seenAt }))

  it("is now while heartbeats keep arriving, so a node silent for NODE_TTL is gone", () => {
    // node A beat 300 ms ago, node B 6 s ago: B is gone.
    const now = 100_000
    const reference = silenceReference(now, seen(now - 300, now - 6_000), heartbeat, nodeTtl)
    expect(reference).toBe(now)
    expect(reference - (now - 6_000)).toBeGreaterThanOrEqual(nodeTtl)
  })

  it("is the last heartbeat heard when this process heard none for a while: its own stall judges nobody", () => {
    // The process was stalled for 7 s: the last beats it read are 7 s and 8 s old, its own among them.
    const now = 100_000
    const reference = silenceReference(now, seen(now - 7_000, now - 8_000), heartbeat, nodeTtl)
    expect(reference).toBe(now - 7_000)
    expect(reference - (now - 8_000)).toBeLessThan(nodeTtl)
  })

  it("believes a silence longer than 3 × NODE_TTL", () => {
    const now = 100_000
    expect(silenceReference(now, seen(now - 16_000), heartbeat, nodeTtl)).toBe(now)
  })

  it("is now when nothing was ever heard", () => {
    expect(silenceReference(5, [], heartbeat, nodeTtl)).toBe(5)
  })
})
