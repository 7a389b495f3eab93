/**
 * `GET /sessions/{sessionId}/status` with the session's API key: routed to the node that owns the session.
 * A key of another session gets the same 404 as a session that does not exist.
 */
import { HttpApiBuilder } from "@effect/platform"
import { Router } from "@wacluster/cluster/Router"
import { WaclusterApi } from "@wacluster/domain/Api"
import { NotFound, ServiceUnavailable } from "@wacluster/domain/ApiErrors"
import { CurrentApiKey } from "@wacluster/domain/Auth"
import { GetStatus } from "@wacluster/domain/Protocol"
import { Effect } from "effect"

const notFound = (sessionId: string) => new NotFound({ message: `no session ${sessionId} for this API key` })

export const SessionStatusLive = HttpApiBuilder.group(
  WaclusterApi,
  "sessionStatus",
  (handlers) =>
    Effect.gen(function*() {
      const router = yield* Router
      return handlers.handle("status", ({ path }) =>
        Effect.gen(function*() {
          const key = yield* CurrentApiKey
          if (key.sessionId !== path.sessionId) return yield* notFound(path.sessionId)
          return yield* router.send(new GetStatus({ sessionId: path.sessionId })).pipe(
            Effect.catchTags({
              SessionUnknown: () => notFound(path.sessionId),
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
        }))
    })
)
