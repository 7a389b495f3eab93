/**
 * The gateway: stateless HTTP front door. Authenticates, does control-plane CRUD in Postgres and routes
 * everything that touches a live session to the node owning it over NATS.
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiSwagger from "@effect/platform/HttpApiSwagger"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import { ClusterConfig } from "@wacluster/cluster/ClusterConfig"
import { ClusterView } from "@wacluster/cluster/ClusterView"
import * as FairScheduler from "@wacluster/cluster/FairScheduler"
import { Logging } from "@wacluster/cluster/Logging"
import { Nats } from "@wacluster/cluster/Nats"
import { Router } from "@wacluster/cluster/Router"
import { WaclusterApi } from "@wacluster/domain/Api"
import * as ApiKeys from "@wacluster/store/ApiKeys"
import * as AuthCipher from "@wacluster/store/AuthCipher"
import * as Database from "@wacluster/store/Database"
import * as Events from "@wacluster/store/Events"
import * as Messages from "@wacluster/store/Messages"
import * as Outbox from "@wacluster/store/Outbox"
import * as SessionRuntime from "@wacluster/store/SessionRuntime"
import * as Sessions from "@wacluster/store/Sessions"
import * as Startup from "@wacluster/store/Startup"
import * as Tenants from "@wacluster/store/Tenants"
import * as WebhookQueue from "@wacluster/store/WebhookQueue"
import * as Webhooks from "@wacluster/store/Webhooks"
import { Config, Effect, identity, Layer } from "effect"
import { createServer } from "node:http"
import * as Auth from "./Auth.js"
import * as ErrorResponses from "./ErrorResponses.js"
import { AdminLive } from "./http/Admin.js"
import { MessagesLive } from "./http/Messages.js"
import { CitiesLive, HealthLive } from "./http/Public.js"
import * as SendFastLane from "./http/SendFastLane.js"
import { SessionAccessLive } from "./http/SessionAccess.js"
import { SessionLifecycleLive } from "./http/SessionLifecycle.js"
import { SessionManagementLive } from "./http/SessionManagement.js"
import { SessionsLive } from "./http/Sessions.js"
import { SessionStatusLive } from "./http/SessionStatus.js"
import { TenantsLive } from "./http/Tenants.js"
import { WebhooksLive } from "./http/Webhooks.js"
import { QrImages } from "./QrImages.js"

const StoreLive = Layer.mergeAll(
  Tenants.layer,
  Sessions.layer,
  ApiKeys.layer,
  SessionRuntime.layer,
  Outbox.layer,
  Messages.layer,
  Events.layer,
  Webhooks.layer,
  WebhookQueue.layer,
  // Webhook secrets are kept encrypted with the key of the auth state.
  AuthCipher.layerConfig
).pipe(
  Layer.provideMerge(Layer.unwrapEffect(Effect.map(ClusterConfig, (config) => Startup.layer(config.shards)))),
  Layer.provideMerge(Database.layer)
)

const ClusterLive = Layer.merge(Router.layerConfig, ClusterView.layer).pipe(
  Layer.provideMerge(Nats.layerConfig("gateway"))
)

const ApiLive = HttpApiBuilder.api(WaclusterApi).pipe(
  Layer.provide([
    HealthLive,
    CitiesLive,
    TenantsLive,
    SessionsLive,
    SessionStatusLive,
    SessionAccessLive,
    SessionLifecycleLive,
    SessionManagementLive,
    MessagesLive,
    WebhooksLive,
    AdminLive
  ]),
  Layer.provide([Auth.layer, QrImages.layer])
)

const accessLog = Config.boolean("ACCESS_LOG").pipe(
  Config.withDefault(false),
  Config.withDescription("Log every HTTP request (off by default: at thousands of requests a second it costs)")
)

const serverOptions = {
  port: Config.port("PORT").pipe(Config.withDefault(8080), Config.withDescription("Gateway HTTP port")),
  host: Config.string("HOST").pipe(Config.withDefault("0.0.0.0"), Config.withDescription("Gateway bind address"))
}

/** The HTTP server, with the send fast lane in front of it (not while every request is logged: it logs nothing). */
const ServerLive = Layer.unwrapEffect(
  Effect.gen(function*() {
    if (yield* accessLog) return NodeHttpServer.layerConfig(createServer, serverOptions)
    const lane = yield* SendFastLane.make
    return NodeHttpServer.layerConfig(() => SendFastLane.server(lane), serverOptions)
  })
).pipe(Layer.provide(Auth.CredentialsLive))

const HttpLive = Layer.unwrapEffect(
  Effect.map(accessLog, (enabled) => HttpApiBuilder.serve(enabled ? HttpMiddleware.logger : identity))
).pipe(
  // The contract as OpenAPI 3.1, and Swagger UI over it (served from this process: no CDN needed).
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(ErrorResponses.layer),
  Layer.provide(ApiLive),
  HttpServer.withLogAddress,
  Layer.provide(ServerLive)
)

const MainLive = HttpLive.pipe(
  Layer.provide(ClusterLive),
  Layer.provide(StoreLive),
  Layer.provide(ClusterConfig.layer),
  Layer.provide(Logging.layer("gateway")),
  // No span exporter is configured yet, so spans would only cost time on every request (tens of µs each).
  Layer.provide(Layer.setTracerEnabled(false)),
  // Fibers run in slices of 10 ms, so timers and socket reads are never starved (FairScheduler.ts).
  Layer.provide(FairScheduler.layer(10))
)

NodeRuntime.runMain(Layer.launch(MainLive), { disablePrettyLogger: true })
