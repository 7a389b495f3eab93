/**
 * A node: joins the cluster, takes its share of the shards and runs their session actors.
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServer from "@effect/platform/HttpServer"
import { ClusterConfig } from "@wacluster/cluster/ClusterConfig"
import { EventStream } from "@wacluster/cluster/EventStream"
import * as FairScheduler from "@wacluster/cluster/FairScheduler"
import { LeaseKeeper } from "@wacluster/cluster/LeaseKeeper"
import { Logging } from "@wacluster/cluster/Logging"
import { Membership } from "@wacluster/cluster/Membership"
import { Nats } from "@wacluster/cluster/Nats"
import * as NodeControl from "@wacluster/cluster/NodeControl"
import { EpochFloor, ShardLeases } from "@wacluster/cluster/ShardLeases"
import { SlowStops } from "@wacluster/cluster/SlowStops"
import { Health, NodeApi, ProcessMemory } from "@wacluster/domain/Api"
import { NodeId } from "@wacluster/domain/Ids"
import * as SessionHost from "@wacluster/session/SessionHost"
import * as AuthCipher from "@wacluster/store/AuthCipher"
import * as AuthState from "@wacluster/store/AuthState"
import * as Database from "@wacluster/store/Database"
import * as Events from "@wacluster/store/Events"
import * as Messages from "@wacluster/store/Messages"
import * as Outbox from "@wacluster/store/Outbox"
import * as SessionRuntime from "@wacluster/store/SessionRuntime"
import * as Sessions from "@wacluster/store/Sessions"
import * as ShardFences from "@wacluster/store/ShardFences"
import * as Startup from "@wacluster/store/Startup"
import * as WebhookQueue from "@wacluster/store/WebhookQueue"
import * as Webhooks from "@wacluster/store/Webhooks"
import * as WebhookClient from "@wacluster/webhooks/WebhookClient"
import { webhookConfig } from "@wacluster/webhooks/WebhookConfig"
import * as WebhookDispatcher from "@wacluster/webhooks/WebhookDispatcher"
import * as WebhookIntake from "@wacluster/webhooks/WebhookIntake"
import * as BaileysDriver from "@wacluster/whatsapp/BaileysDriver"
import { ProxyConfig } from "@wacluster/whatsapp/ProxyConfig"
import { Config, ConfigError, Effect, Either, Layer, ParseResult, Schedule, Schema } from "effect"
import { createServer } from "node:http"
import { hostname } from "node:os"

const VERSION = "0.1.0"

const nodeIdConfig = Config.string("NODE_ID").pipe(
  Config.withDefault(hostname().toLowerCase().replace(/[^a-z0-9-]/g, "-").slice(0, 63)),
  Config.mapOrFail((raw) =>
    Either.mapLeft(
      Schema.decodeUnknownEither(NodeId)(raw),
      (error) => ConfigError.InvalidData(["NODE_ID"], ParseResult.TreeFormatter.formatErrorSync(error))
    )
  ),
  Config.withDescription("This node's id (lowercase letters, digits, dashes); unique in the cluster")
)

const StoreLive = Layer.mergeAll(
  Sessions.layer,
  SessionRuntime.layer,
  Messages.layer,
  Outbox.layer,
  Events.layer,
  ShardFences.layer,
  WebhookQueue.layer,
  Webhooks.layer,
  AuthState.layer.pipe(Layer.provideMerge(AuthCipher.layerConfig))
).pipe(
  Layer.provideMerge(Layer.unwrapEffect(Effect.map(ClusterConfig, (config) => Startup.layer(config.shards)))),
  Layer.provideMerge(Database.layer)
)

/** WhatsApp through Baileys, each session through its city's proxy (WA_WEBSOCKET_URL points at a simulator). */
const DriverLive = Layer.merge(BaileysDriver.layerConfig, ProxyConfig.layer)

/** New lease epochs start above every fence in Postgres, even on a NATS that lost its storage. */
const EpochFloorLive = Layer.effect(
  EpochFloor,
  Effect.map(ShardFences.ShardFences, (fences) => ({ highest: fences.highest }))
)

/** What this node runs goes out with its heartbeats, for the operator's view (`GET /admin/cluster`). */
const LoadReportLive = Layer.scopedDiscard(Effect.gen(function*() {
  const config = yield* ClusterConfig
  const host = yield* SessionHost.SessionHost
  const leases = yield* ShardLeases
  const membership = yield* Membership
  const report = Effect.gen(function*() {
    let sessions = 0
    for (const count of (yield* host.running).values()) sessions += count
    yield* membership.reportLoad({ shards: (yield* leases.held).length, sessions })
  })
  yield* report.pipe(Effect.repeat(Schedule.spaced(config.heartbeat)), Effect.forkScoped)
}))

const ClusterLive = Layer.unwrapEffect(
  Effect.map(nodeIdConfig, (nodeId) =>
    Layer.merge(NodeControl.layer, LoadReportLive).pipe(
      Layer.provideMerge(ShardLeases.layer),
      Layer.provide(EpochFloorLive),
      // The same layer value as the HTTP health check uses, so both share the one host (memoised by reference).
      Layer.provideMerge(SessionHost.layerConfig),
      Layer.provideMerge(Membership.layer({ nodeId, version: VERSION })),
      // Before the membership: once others see this node, they hand it shards, and it must be able to hold them.
      Layer.provide(LeaseKeeper.onThread)
    ))
)

/** Webhooks: every node pulls events into the queues of their endpoints and delivers the queues of its shards. */
const WebhooksLive = Layer.unwrapEffect(
  Effect.map(webhookConfig, (config) =>
    WebhookDispatcher.layer(config).pipe(
      Layer.provide(WebhookIntake.layer),
      Layer.provide(WebhookClient.layer(config.policy, config.timeout)),
      Layer.provide(ClusterLive)
    ))
)

const HttpLive = Layer.unwrapEffect(
  Effect.map(nodeIdConfig, (nodeId) => {
    const HealthLive = HttpApiBuilder.group(NodeApi, "health", (handlers) =>
      Effect.gen(function*() {
        const host = yield* SessionHost.SessionHost
        const startedAt = Date.now()
        return handlers.handle("healthz", () =>
          Effect.map(host.running, (running) => {
            const memory = process.memoryUsage()
            let sessions = 0
            for (const count of running.values()) sessions += count
            return new Health({
              status: "ok",
              service: "node",
              nodeId,
              uptimeSeconds: (Date.now() - startedAt) / 1000,
              sessions,
              memory: new ProcessMemory({
                rssBytes: memory.rss,
                heapUsedBytes: memory.heapUsed,
                externalBytes: memory.external
              })
            })
          }))
      }))
    return HttpApiBuilder.serve().pipe(
      // The same layer value as the leases use, so both share the one host (layers are memoised by reference).
      Layer.provide(
        HttpApiBuilder.api(NodeApi).pipe(Layer.provide(HealthLive), Layer.provide(SessionHost.layerConfig))
      ),
      HttpServer.withLogAddress,
      Layer.provide(NodeHttpServer.layerConfig(createServer, {
        port: Config.port("HTTP_PORT").pipe(Config.withDefault(8090), Config.withDescription("Node HTTP port")),
        host: Config.string("HOST").pipe(Config.withDefault("0.0.0.0"), Config.withDescription("Node bind address"))
      }))
    )
  })
)

const MainLive = Layer.mergeAll(ClusterLive, HttpLive, WebhooksLive).pipe(
  Layer.provide(DriverLive),
  Layer.provide(EventStream.layerConfig),
  Layer.provide(Nats.layerConfig("node")),
  Layer.provide(StoreLive),
  Layer.provide(ClusterConfig.layer),
  // Seen by every layer above: a stop that hangs names what it is waiting for (the last lines before a SIGKILL).
  Layer.provide(SlowStops.layer()),
  Layer.provide(Logging.layer("node")),
  // No span exporter is configured yet, so spans would only cost time on every request (tens of µs each).
  Layer.provide(Layer.setTracerEnabled(false)),
  // Fibers run in slices of 10 ms, so timers (lease renewals) and socket reads are never starved (FairScheduler.ts).
  Layer.provide(FairScheduler.layer(10))
)

NodeRuntime.runMain(Layer.launch(MainLive), { disablePrettyLogger: true })
