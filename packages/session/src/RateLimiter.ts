/**
 * Rate limits as the session's owner enforces them: one bucket per limit (the session's requests per minute and
 * texts per hour, and the same for each of its keys that has its own), kept by the generic cell rate algorithm:
 * `limit` requests per window, at most `limit` at once, each allowed request pushing the bucket's "theoretical
 * arrival time" one interval (window / limit) further. Only the node that owns a session counts for it, so the
 * limits hold across every gateway of the cluster; a session that moves to another node starts with full buckets.
 */

export interface Quota {
  /** Requests (or texts) allowed per window. */
  readonly limit: number
  readonly windowMs: number
}

/** What a check found; `allowed` false means nothing was counted. */
export interface Verdict {
  readonly allowed: boolean
  readonly limit: number
  /** Left in the window after this request (0 when refused). */
  readonly remaining: number
  /** Until the bucket is full again (ms). */
  readonly resetMs: number
  /** Until a refused request could be allowed (ms); 0 when allowed. */
  readonly retryAfterMs: number
}

export interface Bucket {
  /** The theoretical arrival time (ms, the caller's monotonic clock). */
  tat: number
}

export const emptyBucket = (): Bucket => ({ tat: Number.NEGATIVE_INFINITY })

/** What `count` more requests would find, without counting them. */
export const inspect = (bucket: Bucket, quota: Quota, now: number, count = 1): Verdict => {
  const interval = quota.windowMs / quota.limit
  const from = Math.max(bucket.tat, now)
  const tat = from + interval * count
  const allowAt = tat - quota.windowMs
  if (count > quota.limit || allowAt > now) {
    return {
      allowed: false,
      limit: quota.limit,
      remaining: 0,
      resetMs: Math.max(0, from - now),
      retryAfterMs: count > quota.limit ? quota.windowMs : Math.ceil(allowAt - now)
    }
  }
  return {
    allowed: true,
    limit: quota.limit,
    remaining: Math.max(0, Math.floor((quota.windowMs - (tat - now)) / interval + 1e-9)),
    resetMs: Math.max(0, tat - now),
    retryAfterMs: 0
  }
}

/** Counts `count` requests (call only after `inspect` allowed them). */
export const take = (bucket: Bucket, quota: Quota, now: number, count = 1): void => {
  bucket.tat = Math.max(bucket.tat, now) + (quota.windowMs / quota.limit) * count
}

/**
 * Carries a bucket over to a new quota: the requests it counted still count, now at the new quota's pace (without
 * this, a bucket that a low limit had filled would stay full under a higher one until the old pace had drained it).
 */
export const rescale = (bucket: Bucket, from: Quota, to: Quota, now: number): void => {
  if (bucket.tat <= now) return
  const counted = (bucket.tat - now) / (from.windowMs / from.limit)
  bucket.tat = now + counted * (to.windowMs / to.limit)
}

/**
 * Checks every limit a request falls under and counts it in all of them only when all allow it. Answers the
 * binding verdict with the index of its limit: the refusal that frees up last, or the allowance with the least left.
 */
export const admit = (
  limits: ReadonlyArray<{ readonly bucket: Bucket; readonly quota: Quota }>,
  now: number
): { readonly verdict: Verdict; readonly index: number } | undefined => {
  let binding: { verdict: Verdict; index: number } | undefined
  limits.forEach(({ bucket, quota }, index) => {
    const verdict = inspect(bucket, quota, now)
    const current = binding?.verdict
    const binds = current === undefined ||
      (verdict.allowed
        ? current.allowed && verdict.remaining < current.remaining
        : current.allowed || verdict.retryAfterMs > current.retryAfterMs)
    if (binds) binding = { verdict, index }
  })
  if (binding?.verdict.allowed === true) { for (const { bucket, quota } of limits) take(bucket, quota, now) }
  return binding
}
