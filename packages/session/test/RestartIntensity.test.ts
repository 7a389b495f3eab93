import { describe, expect, it } from "@effect/vitest"
import { Duration } from "effect"
import { makeWindow } from "../src/RestartIntensity.js"

const policy = { maxRestarts: 3, within: Duration.seconds(10), parkFor: Duration.minutes(1) }

describe("RestartIntensity", () => {
  it("allows up to the limit within the window and refuses the next", () => {
    const window = makeWindow(policy)
    expect([window.record(0), window.record(1000), window.record(2000)]).toEqual([false, false, false])
    expect(window.record(3000)).toBe(true)
  })

  it("forgets restarts older than the window", () => {
    const window = makeWindow(policy)
    window.record(0)
    window.record(1000)
    window.record(2000)
    expect(window.count(10_500)).toBe(2)
    expect(window.record(10_500)).toBe(false)
    expect(window.record(10_900)).toBe(true)
  })

  it("starts clean after a reset", () => {
    const window = makeWindow(policy)
    for (let at = 0; at < 4; at++) window.record(at)
    window.reset()
    expect(window.count(5)).toBe(0)
    expect(window.record(5)).toBe(false)
  })
})
