import { NodeId } from "@wacluster/domain/Ids"
import { DateTime } from "effect"
import { describe, expect, it } from "vitest"
import { type LiveNode, makeView, NodeEntry, silenceReference } from "../src/Membership.js"

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

describe("makeView", () => {
  const heartbeat = 1_000
  const nodeTtl = 5_000
  const entry = (nodeId: string) =>
    new NodeEntry({
      nodeId: NodeId.make(nodeId),
      startedAt: DateTime.unsafeMake(0),
      draining: false,
      version: "test"
    })
  const ids = (nodes: ReadonlyArray<LiveNode>) => nodes.map((node) => node.entry.nodeId).sort()

  it("counts a node gone once its entry has not changed for NODE_TTL while others keep beating", () => {
    const view = makeView(heartbeat, nodeTtl)
    let revision = 0
    view.saw(0, "a", ++revision, entry("a"))
    view.saw(0, "b", ++revision, entry("b"))
    // Only a keeps beating.
    for (let now = 1_000; now <= 5_000; now += 1_000) view.saw(now, "a", ++revision, entry("a"))
    expect(ids(view.live(4_999))).toEqual(["a", "b"])
    expect(ids(view.live(5_000))).toEqual(["a"])
    // The same revision again (a watch replaying the bucket) is no sign of life.
    view.saw(5_100, "b", 2, entry("b"))
    expect(ids(view.live(5_100))).toEqual(["a"])
  })

  it("holds nobody's silence against them when no heartbeat at all came through, and resumes after it", () => {
    const view = makeView(heartbeat, nodeTtl)
    let revision = 0
    view.saw(0, "a", ++revision, entry("a"))
    view.saw(0, "b", ++revision, entry("b"))
    view.saw(0, "c", ++revision, entry("c"))
    // c has gone quiet; a and b beat until 3 s.
    for (let now = 1_000; now <= 3_000; now += 1_000) {
      view.saw(now, "a", ++revision, entry("a"))
      view.saw(now, "b", ++revision, entry("b"))
    }
    // Then nothing comes through for 6 s (the bucket elects a new leader): nobody is judged meanwhile.
    expect(ids(view.live(8_999))).toEqual(["a", "b", "c"])
    // a's beat is the first through; b's comes 800 ms later. b must not look gone in between, as it would if the
    // silence counted against it (9 s since its last beat).
    view.saw(9_000, "a", ++revision, entry("a"))
    expect(ids(view.live(9_000))).toEqual(["a", "b", "c"])
    expect(ids(view.live(9_799))).toEqual(["a", "b", "c"])
    view.saw(9_800, "b", ++revision, entry("b"))
    // c's silence resumes where it stood when the silence began (3 s): gone 2 s after it ended.
    expect(ids(view.live(10_999))).toEqual(["a", "b", "c"])
    expect(ids(view.live(11_000))).toEqual(["a", "b"])
  })

  it("forgets a node that deleted its entry at once", () => {
    const view = makeView(heartbeat, nodeTtl)
    view.saw(0, "a", 1, entry("a"))
    view.saw(0, "b", 2, entry("b"))
    view.forget(100, "b")
    expect(ids(view.live(100))).toEqual(["a"])
  })
})
