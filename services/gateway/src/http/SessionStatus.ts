/**
 * `GET /sessions/{sessionId}/status` with the session's API key: routed to the node that owns the session.
 * A key of another session gets the same 404 as a session that does not exist.
 */
import { HttpApiBuilder } from "@effect/platform"
import { Router } from "@wacluster/cluster/Router"
import { WaclusterApi } from "@wacluster/domain/Api"
import { CurrentApiKey } from "@wacluster/domain/Auth"
import { GetStatus } from "@wacluster/domain/Protocol"
import { Effect } from "effect"
import { routingErrors, sessionNotFound } from "./Routing.js"

export const SessionStatusLive = HttpApiBuilder.group(
  WaclusterApi,
  "sessionStatus",
  (handlers) =>
    Effect.gen(function*() {
      const router = yield* Router
      return handlers.handle("status", ({ path }) =>
        Effect.gen(function*() {
          const key = yield* CurrentApiKey
          if (key.sessionId !== path.sessionId) return yield* sessionNotFound(path.sessionId)
          return yield* router.send(new GetStatus({ sessionId: path.sessionId })).pipe(
            routingErrors(path.sessionId)
          )
        }))
    })
)
