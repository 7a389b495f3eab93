/**
 * What a routed command's failures mean to an HTTP caller: the session vanished (404), or its owner is busy,
 * moving or silent (503 with Retry-After).
 */
import type { OwnerUnavailable } from "@wacluster/cluster/Router"
import { NotFound, ServiceUnavailable } from "@wacluster/domain/ApiErrors"
import type { CommandError } from "@wacluster/domain/Protocol"
import { Effect } from "effect"

export const sessionNotFound = (sessionId: string) =>
  new NotFound({ message: `no session ${sessionId} for these credentials` })

export const routingErrors =
  (sessionId: string) => <A, R>(effect: Effect.Effect<A, CommandError | OwnerUnavailable, R>) =>
    effect.pipe(
      Effect.catchTags({
        SessionUnknown: () => sessionNotFound(sessionId),
        SessionBusy: () =>
          new ServiceUnavailable({ message: "the session is busy; retry shortly", retryAfterSeconds: 1 }),
        NotOwner: () => new ServiceUnavailable({ message: "the session is moving between nodes; retry shortly" }),
        OwnerUnavailable: (error) =>
          Effect.zipRight(
            Effect.logWarning("no owner answered").pipe(
              Effect.annotateLogs({ shard: error.shard, attempts: error.attempts, lastError: error.lastError })
            ),
            new ServiceUnavailable({
              message: "the node running this session did not answer; retry shortly",
              retryAfterSeconds: 2
            })
          )
      })
    )
