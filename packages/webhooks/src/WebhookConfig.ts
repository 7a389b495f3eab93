/**
 * How webhooks are delivered: the retry schedule, timeouts, how many posts a node has in flight, how long the
 * delivery log is kept, and which reserved networks endpoints may target.
 */
import { Config, Duration } from "effect"
import { policyConfig, type TargetPolicy } from "./TargetGuard.js"

export interface WebhookConfig {
  /** The waits between attempts: after the first failure the first wait, and so on; then the endpoint is off. */
  readonly retrySchedule: ReadonlyArray<Duration.Duration>
  readonly timeout: Duration.Duration
  readonly concurrency: number
  readonly logRetention: Duration.Duration
  readonly policy: TargetPolicy
}

export const DEFAULT_RETRY_SCHEDULE = [
  "5 seconds",
  "5 minutes",
  "30 minutes",
  "2 hours",
  "5 hours",
  "10 hours",
  "10 hours"
]

export const webhookConfig: Config.Config<WebhookConfig> = Config.all({
  retrySchedule: Config.array(Config.duration(), "WEBHOOK_RETRY_SCHEDULE").pipe(
    Config.withDefault(DEFAULT_RETRY_SCHEDULE.map((text) => Duration.decode(text as Duration.DurationInput))),
    Config.validate({ message: "WEBHOOK_RETRY_SCHEDULE needs at least one wait", validation: (s) => s.length > 0 }),
    Config.withDescription(
      "Waits between delivery attempts, comma-separated (default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: over a " +
        "day); an endpoint still failing after the last is turned off"
    )
  ),
  timeout: Config.duration("WEBHOOK_TIMEOUT").pipe(
    Config.withDefault(Duration.seconds(15)),
    Config.withDescription("How long an endpoint has to answer a delivery")
  ),
  concurrency: Config.integer("WEBHOOK_CONCURRENCY").pipe(
    Config.withDefault(256),
    Config.validate({ message: "WEBHOOK_CONCURRENCY must be positive", validation: (n) => n > 0 }),
    Config.withDescription("Deliveries a node has in flight at once (one per endpoint at a time, in order)")
  ),
  logRetention: Config.duration("WEBHOOK_LOG_RETENTION").pipe(
    Config.withDefault(Duration.days(30)),
    Config.withDescription("How long the delivery log (and what can be redelivered) is kept")
  ),
  policy: policyConfig
})

/** How long the previous secret keeps signing after a rotation. */
export const secretGraceConfig = Config.duration("WEBHOOK_SECRET_GRACE").pipe(
  Config.withDefault(Duration.hours(24)),
  Config.withDescription("How long a rotated-out webhook secret keeps signing beside the new one")
)
