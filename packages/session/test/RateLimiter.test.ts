import { describe, expect, it } from "vitest"
import { admit, emptyBucket, inspect, rescale, take } from "../src/RateLimiter.js"

const perMinute = (limit: number) => ({ limit, windowMs: 60_000 })

describe("RateLimiter", () => {
  it("allows a full window's worth at once, then one more per interval", () => {
    const bucket = emptyBucket()
    const quota = perMinute(6)
    for (let i = 0; i < 6; i++) {
      const verdict = inspect(bucket, quota, 0)
      expect(verdict).toMatchObject({ allowed: true, remaining: 5 - i })
      take(bucket, quota, 0)
    }
    const refused = inspect(bucket, quota, 0)
    expect(refused).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 10_000, resetMs: 60_000 })
    expect(inspect(bucket, quota, 9_999).allowed).toBe(false)
    expect(inspect(bucket, quota, 10_000)).toMatchObject({ allowed: true, remaining: 0 })
    // A quiet minute gives the whole allowance back.
    expect(inspect(bucket, quota, 60_000)).toMatchObject({ allowed: true, remaining: 5 })
  })

  it("counts a request in every limit only when all of them allow it, and names the one that binds", () => {
    const session = emptyBucket()
    const key = emptyBucket()
    const limits = [{ bucket: session, quota: perMinute(100) }, { bucket: key, quota: perMinute(2) }]
    expect(admit(limits, 0)).toMatchObject({ index: 1, verdict: { allowed: true, remaining: 1 } })
    expect(admit(limits, 0)).toMatchObject({ index: 1, verdict: { allowed: true, remaining: 0 } })
    const refused = admit(limits, 0)
    expect(refused).toMatchObject({ index: 1, verdict: { allowed: false, retryAfterMs: 30_000 } })
    // The refused request was not counted against the session.
    expect(inspect(session, perMinute(100), 0).remaining).toBe(97)
    expect(admit([], 0)).toBeUndefined()
  })

  it("keeps what a bucket counted when its quota changes, at the new pace", () => {
    const bucket = emptyBucket()
    for (let i = 0; i < 5; i++) take(bucket, perMinute(5), 0)
    expect(inspect(bucket, perMinute(5), 0).allowed).toBe(false)
    // Raised to 6000 a minute: the 5 counted take 50 ms of it, and the rest is free.
    rescale(bucket, perMinute(5), perMinute(6_000), 0)
    expect(inspect(bucket, perMinute(6_000), 0)).toMatchObject({ allowed: true, remaining: 6_000 - 6 })
    // Lowered to 2 a minute: the 5 counted are more than it allows; nothing until they have drained at its pace.
    const full = emptyBucket()
    for (let i = 0; i < 5; i++) take(full, perMinute(5), 0)
    rescale(full, perMinute(5), perMinute(2), 0)
    expect(inspect(full, perMinute(2), 0)).toMatchObject({ allowed: false, retryAfterMs: 120_000 })
    // A bucket with nothing counted stays empty.
    const idle = emptyBucket()
    rescale(idle, perMinute(5), perMinute(1), 10)
    expect(inspect(idle, perMinute(1), 10).allowed).toBe(true)
  })

  it("refuses a batch larger than the whole allowance for a full window", () => {
    expect(inspect(emptyBucket(), perMinute(3), 0, 4)).toMatchObject({ allowed: false, retryAfterMs: 60_000 })
  })
})
