/**
 * A node's side of the control subjects (`wa.ctl.nodes.<nodeId>.>`): operators drain it (it hands every shard to
 * the other nodes, a batch per heartbeat, and takes none) or end a drain. A drain lasts as long as the process: a
 * restarted node takes its share again.
 */
import { ControlRefused, DrainReply, DrainRequest, drainSubject, NodeDrain } from "@wacluster/domain/Control"
import { Effect, Layer, Schema } from "effect"
import { Membership } from "./Membership.js"
import { Nats } from "./Nats.js"
import { ShardLeases } from "./ShardLeases.js"

const decodeRequest = Schema.decodeUnknown(Schema.parseJson(DrainRequest))
const encodeReply = Schema.encodeSync(Schema.parseJson(DrainReply))

export const make = Effect.gen(function*() {
  const nats = yield* Nats
  const membership = yield* Membership
  const leases = yield* ShardLeases

  const state = Effect.gen(function*() {
    const held = yield* leases.held
    const candidates = yield* membership.candidates
    return new NodeDrain({
      nodeId: membership.self,
      draining: yield* membership.draining,
      shards: held.length,
      otherNodes: candidates.filter((id) => id !== membership.self).length
    })
  })

  yield* nats.serve(drainSubject(membership.self), (payload) =>
    decodeRequest(new TextDecoder().decode(payload)).pipe(
      Effect.flatMap((request) =>
        Effect.zipRight(
          Effect.zipRight(
            Effect.logInfo("drain requested").pipe(Effect.annotateLogs({ draining: request.draining })),
            membership.setDraining(request.draining)
          ),
          state
        )
      ),
      Effect.catchTag("ParseError", (error) =>
        Effect.succeed(new ControlRefused({ error: `expected {"draining": true|false}: ${error.message}` }))),
      Effect.map((reply) =>
        new TextEncoder().encode(encodeReply(reply))
      )
    ))
})

export const layer = Layer.scopedDiscard(make)
