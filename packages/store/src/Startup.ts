/**
 * What every process does with the database before it serves: apply the migrations (safe when many processes
 * start at once), then check that its `SHARDS` is the cluster's.
 */
import { Effect, Layer } from "effect"
import { ClusterMeta, layer as ClusterMetaLive } from "./ClusterMeta.js"
import * as Migrations from "./Migrations.js"

export const layer = (shards: number) =>
  Layer.effectDiscard(Effect.flatMap(ClusterMeta, (meta) => meta.ensureShards(shards))).pipe(
    Layer.provide(ClusterMetaLive),
    Layer.provide(Migrations.layer)
  )
