/**
 * Decorrelated-jitter backoff ("Exponential Backoff and Jitter", AWS Architecture Blog): each delay is
 * random between the base and three times the previous delay, capped. Spreads reconnect storms.
 */
import { Duration, Effect, Random } from "effect"

export interface BackoffPolicy {
  readonly base: Duration.Duration
  readonly cap: Duration.Duration
}

export const defaultBackoff: BackoffPolicy = { base: Duration.seconds(1), cap: Duration.seconds(30) }

/** The delay after `previous` (none before the first retry). */
export const nextDelay = (policy: BackoffPolicy, previous: Duration.Duration | undefined) =>
  Effect.map(Random.next, (r) => {
    const base = Duration.toMillis(policy.base)
    const cap = Duration.toMillis(policy.cap)
    const upper = Math.max(base, 3 * (previous === undefined ? base : Duration.toMillis(previous)))
    return Duration.millis(Math.min(cap, Math.round(base + r * (upper - base))))
  })
