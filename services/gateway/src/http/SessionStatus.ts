/**
 * `GET /sessions/{sessionId}/status` (the product's health check), with the session's API key or the tenant token:
 * routed to the node that owns the session. Another session's key gets the same 404 as a session that does not
 * exist.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Router } from "@wacluster/cluster/Router"
import { WaclusterApi } from "@wacluster/domain/Api"
import { GetStatus } from "@wacluster/domain/Protocol"
import { Effect } from "effect"
import { authorize, currentCaller } from "./Access.js"
import { routingErrors } from "./Routing.js"

export const SessionStatusLive = HttpApiBuilder.group(
  WaclusterApi,
  "sessionStatus",
  (handlers) =>
    Effect.gen(function*() {
      const router = yield* Router
      return handlers.handle("status", ({ path }) =>
        Effect.gen(function*() {
          yield* authorize(path.sessionId)
          return yield* router.send(new GetStatus({ sessionId: path.sessionId, caller: yield* currentCaller })).pipe(
            routingErrors(path.sessionId)
          )
        }))
    })
)
