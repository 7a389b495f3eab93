/**
 * The operator's endpoints (admin token): the cluster at a glance, and draining a node. A drain is sent to the node
 * itself over NATS (`wa.ctl.nodes.<nodeId>.drain`), the same control message an operator can send with the nats CLI.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { ClusterView } from "@wacluster/cluster/ClusterView"
import { Nats } from "@wacluster/cluster/Nats"
import { WaclusterApi } from "@wacluster/domain/Api"
import { NotFound, ServiceUnavailable } from "@wacluster/domain/ApiErrors"
import { DrainReply, DrainRequest, drainSubject } from "@wacluster/domain/Control"
import type { NodeId } from "@wacluster/domain/Ids"
import { Effect, Schema } from "effect"

const encodeRequest = Schema.encodeSync(Schema.parseJson(DrainRequest))
const decodeReply = Schema.decodeUnknown(Schema.parseJson(DrainReply))

export const AdminLive = HttpApiBuilder.group(WaclusterApi, "admin", (handlers) =>
  Effect.gen(function*() {
    const view = yield* ClusterView
    const nats = yield* Nats

    const drain = (nodeId: NodeId, draining: boolean) =>
      Effect.gen(function*() {
        const live = yield* view.live
        if (!live.some((node) => node.entry.nodeId === nodeId)) {
          return yield* new NotFound({ message: `no live node ${nodeId}` })
        }
        const payload = new TextEncoder().encode(encodeRequest(new DrainRequest({ draining })))
        const reply = yield* nats.request(drainSubject(nodeId), payload, "3 seconds").pipe(
          Effect.flatMap((bytes) => decodeReply(new TextDecoder().decode(bytes))),
          Effect.mapError((error) =>
            new ServiceUnavailable({
              message: error._tag === "NoResponders"
                ? `node ${nodeId} is not answering control requests (stopping?); retry shortly`
                : `node ${nodeId} did not answer the drain request: ${error.message}`,
              retryAfterSeconds: 2
            })
          )
        )
        if ("error" in reply) return yield* Effect.dieMessage(`node ${nodeId} refused a drain request: ${reply.error}`)
        return reply
      })

    return handlers
      .handle("cluster", () =>
        view.overview.pipe(
          Effect.mapError((error) =>
            new ServiceUnavailable({ message: `NATS could not be read: ${error.message}`, retryAfterSeconds: 2 })
          )
        ))
      .handle("drain", ({ path }) => drain(path.nodeId, true))
      .handle("undrain", ({ path }) => drain(path.nodeId, false))
  }))
