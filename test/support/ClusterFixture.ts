/**
 * A real local cluster for a test file: private nats-server, a fresh database on the test Postgres, wa-sim as
 * WhatsApp, one gateway and N nodes as child processes. Started once per file, stopped (no process left) when the
 * file ends.
 */
import { ClusterConfig } from "@wacluster/cluster/ClusterConfig"
import { Nats } from "@wacluster/cluster/Nats"
import { Router } from "@wacluster/cluster/Router"
import { leaseKey, LeaseValue, SHARDS_BUCKET } from "@wacluster/cluster/ShardLeases"
import type { SessionCommand } from "@wacluster/domain/Protocol"
import * as LocalCluster from "@wacluster/infra/LocalCluster"
import { Context, Duration, Effect, Exit, Layer, Option, Redacted, Schema, Scope } from "effect"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freshDatabase } from "./TestDatabase.js"
import { type WaSimControl, waSimControl } from "./WaSimControl.js"

export interface Fixture {
  readonly cluster: LocalCluster.LocalCluster
  /** wa-sim's control API: the phone and the network. */
  readonly sim: WaSimControl
  /** Sends a command to the session's owner over NATS, as the gateway does. */
  readonly command: <C extends SessionCommand>(command: C) => Promise<Exit.Exit<unknown, unknown>>
  /** Which node holds each shard's lease right now, read from NATS KV. */
  readonly owners: (shards: number) => Promise<ReadonlyMap<number, string>>
  readonly stop: () => Promise<void>
}

const decodeLease = Schema.decodeUnknownOption(Schema.parseJson(LeaseValue))

export const startCluster = async (options: {
  readonly nodes: number
  readonly env?: Readonly<Record<string, string>>
}): Promise<Fixture> => {
  // Nodes always talk to wa-sim in tests: WhatsApp itself is not reachable (and must never be contacted).
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
      simulate: true,
      // Two test files run at once on two cores; a process started while the other file loads the machine has been
      // seen to need more than the default 30 s to answer its health check (a restarted node in CI).
      startTimeout: "60 seconds",
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
    const routing = await run(Layer.build(
      Router.layer({ requestTimeout: Duration.seconds(2), budget: Duration.seconds(8) }).pipe(
        Layer.provide(Layer.succeedContext(context)),
        Layer.provide(ClusterConfig.layerWith({ shards: Number(options.env?.SHARDS ?? "256") }))
      )
    ))
    const router = Context.get(routing, Router)
    const command = <C extends SessionCommand>(sent: C) =>
      Effect.runPromise(Effect.exit(router.send(sent)) as Effect.Effect<Exit.Exit<unknown, unknown>>)
    if (cluster.waSim === undefined) throw new Error("the test cluster runs without wa-sim")
    // Ready once every shard has an owner: a node answers /healthz before it has taken its shards, and a test's
    // first call would otherwise spend the router's budget waiting for one (and get 503 on a busy machine).
    const shards = Number(options.env?.SHARDS ?? "256")
    if (options.nodes > 0) {
      const deadline = Date.now() + 60_000
      while ((await owners(shards)).size < shards) {
        if (Date.now() > deadline) throw new Error("the test cluster's shards never all had an owner")
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    }
    return {
      cluster,
      sim: waSimControl(cluster.waSim.controlUrl),
      command,
      owners,
      stop: () => Effect.runPromise(Scope.close(scope, Exit.void))
    }
  } catch (error) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  }
}
