/**
 * A real local cluster for a test file: private nats-server, a fresh database on the test Postgres, one gateway
 * and N nodes as child processes. Started once per file, stopped (no process left) when the file ends.
 */
import { Nats } from "@wacluster/cluster/Nats"
import { leaseKey, LeaseValue, SHARDS_BUCKET } from "@wacluster/cluster/ShardLeases"
import * as LocalCluster from "@wacluster/infra/LocalCluster"
import { Context, Effect, Exit, Layer, Option, Redacted, Schema, Scope } from "effect"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freshDatabase } from "./TestDatabase.js"

export interface Fixture {
  readonly cluster: LocalCluster.LocalCluster
  /** Which node holds each shard's lease right now, read from NATS KV. */
  readonly owners: (shards: number) => Promise<ReadonlyMap<number, string>>
  readonly stop: () => Promise<void>
}

const decodeLease = Schema.decodeUnknownOption(Schema.parseJson(LeaseValue))

export const startCluster = async (options: {
  readonly nodes: number
  readonly env?: Readonly<Record<string, string>>
}): Promise<Fixture> => {
  const scope = Effect.runSync(Scope.make())
  const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Scope.extend(effect, scope))
  try {
    const dataDir = await mkdtemp(join(tmpdir(), "wacluster-e2e-"))
    await chmod(dataDir, 0o755)
    await run(Effect.addFinalizer(() => Effect.promise(() => rm(dataDir, { recursive: true, force: true }))))
    const databaseUrl = await run(freshDatabase)
    const cluster = await run(LocalCluster.start({
      dataDir,
      nodes: options.nodes,
      databaseUrl,
      logs: "quiet",
      env: { LOG_LEVEL: "Warn", ...options.env }
    }))
    const context = await run(Layer.build(Nats.layer({ url: Redacted.make(cluster.natsUrl), name: "e2e-observer" })))
    const nats = Context.get(context, Nats)
    const bucket = await run(nats.bucket(SHARDS_BUCKET))
    const owners = (shards: number) =>
      Effect.runPromise(Effect.gen(function*() {
        const map = new Map<number, string>()
        for (let shard = 0; shard < shards; shard++) {
          const record = yield* bucket.get(leaseKey(shard))
          if (Option.isNone(record) || record.value.operation !== "PUT") continue
          const lease = decodeLease(new TextDecoder().decode(record.value.value))
          if (Option.isSome(lease)) map.set(shard, lease.value.nodeId)
        }
        return map
      }))
    return { cluster, owners, stop: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
  } catch (error) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  }
}
