/**
 * Restart intensity, as in Erlang/OTP supervisors: a session whose socket was restarted more than
 * `maxRestarts` times within `within` is not restarted again right away but parked for `parkFor`, so a
 * session that cannot stay up does not spin (and does not hammer WhatsApp or its proxy).
 */
import { Duration } from "effect"

export interface RestartIntensityPolicy {
  readonly maxRestarts: number
  readonly within: Duration.Duration
  /** How long a parked session waits before it tries again (the "long backoff"). */
  readonly parkFor: Duration.Duration
}

export const defaultIntensity: RestartIntensityPolicy = {
  maxRestarts: 10,
  within: Duration.minutes(5),
  parkFor: Duration.minutes(15)
}

/** The restart history of one session: monotonic timestamps of the restarts inside the window. */
export interface RestartWindow {
  /** Records a restart at `now`; true when this restart goes over the limit (the session should park). */
  readonly record: (now: number) => boolean
  readonly reset: () => void
  readonly count: (now: number) => number
}

export const makeWindow = (policy: RestartIntensityPolicy): RestartWindow => {
  const windowMs = Duration.toMillis(policy.within)
  let restarts: Array<number> = []
  const prune = (now: number) => {
    const oldest = restarts[0]
    if (oldest !== undefined && now - oldest >= windowMs) restarts = restarts.filter((at) => now - at < windowMs)
  }
  return {
    record: (now) => {
      prune(now)
      restarts.push(now)
      return restarts.length > policy.maxRestarts
    },
    reset: () => {
      restarts = []
    },
    count: (now) => {
      prune(now)
      return restarts.length
    }
  }
}
