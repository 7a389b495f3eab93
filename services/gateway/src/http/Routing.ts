/**
 * What a routed command's failures mean to an HTTP caller: the session vanished (404), or its owner is busy,
 * moving or silent (503 with Retry-After). A command's own failures pass through for its handler to map.
 */
import type { OwnerUnavailable } from "@wacluster/cluster/Router"
import { NotFound, ServiceUnavailable, TooManyRequests } from "@wacluster/domain/ApiErrors"
import type { CommandError } from "@wacluster/domain/Protocol"
import { Effect, Predicate } from "effect"

export const sessionNotFound = (sessionId: string) =>
  new NotFound({ message: `no session ${sessionId} for these credentials` })

type RoutingError = CommandError | OwnerUnavailable

const routingTags: ReadonlyArray<RoutingError["_tag"]> = [
  "SessionUnknown",
  "SessionBusy",
  "StorageUnavailable",
  "NotOwner",
  "OwnerUnavailable",
  "RateLimited"
]

const isRoutingError = (error: unknown): error is RoutingError =>
  routingTags.some((tag) => Predicate.isTagged(error, tag))

const toHttp = (
  sessionId: string,
  error: RoutingError
): Effect.Effect<never, NotFound | ServiceUnavailable | TooManyRequests> => {
  switch (error._tag) {
    case "SessionUnknown":
      return Effect.fail(sessionNotFound(sessionId))
    case "SessionBusy":
      return Effect.fail(
        new ServiceUnavailable({ message: "the session is busy; retry shortly", retryAfterSeconds: 1 })
      )
    case "StorageUnavailable":
      return Effect.fail(
        new ServiceUnavailable({
          message: "the node running this session cannot reach storage; retry shortly",
          retryAfterSeconds: 2
        })
      )
    case "NotOwner":
      return Effect.fail(new ServiceUnavailable({ message: "the session is moving between nodes; retry shortly" }))
    case "RateLimited": {
      const what = error.kind === "requests"
        ? `${error.limit} requests per ${error.windowSeconds === 60 ? "minute" : `${error.windowSeconds} s`}`
        : `${error.limit} texts per ${error.windowSeconds === 3600 ? "hour" : `${error.windowSeconds} s`}`
      const retryAfterSeconds = Math.max(1, Math.ceil(error.retryAfterMs / 1000))
      return Effect.fail(
        new TooManyRequests({
          message: `rate limit of ${error.scope === "key" ? "this API key" : "this session"} reached (${what}); ` +
            `retry in ${retryAfterSeconds} s`,
          details: { kind: error.kind, scope: error.scope, limit: error.limit, windowSeconds: error.windowSeconds },
          retryAfterSeconds,
          limit: error.limit,
          windowSeconds: error.windowSeconds,
          resetSeconds: Math.max(1, Math.ceil(error.resetMs / 1000))
        })
      )
    }
    case "OwnerUnavailable":
      return Effect.zipRight(
        Effect.logWarning("no owner answered").pipe(
          Effect.annotateLogs({ shard: error.shard, attempts: error.attempts, lastError: error.lastError })
        ),
        Effect.fail(
          new ServiceUnavailable({
            message: "the node running this session did not answer; retry shortly",
            retryAfterSeconds: 2
          })
        )
      )
  }
}

export const routingErrors = (sessionId: string) =>
<A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, Exclude<E, Extract<E, RoutingError>> | NotFound | ServiceUnavailable | TooManyRequests, R> =>
  Effect.catchIf(
    effect,
    (error): error is Extract<E, RoutingError> => isRoutingError(error),
    (error) => toHttp(sessionId, error)
  )
