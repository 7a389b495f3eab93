/**
 * A whole wacluster on this machine, owned by a Scope: nats-server and Postgres (unless URLs are given), one
 * gateway and N nodes. Used by `pnpm start` and by e2e tests and benchmarks. Closing the scope stops the services
 * (all at once), then Postgres and nats-server.
 */
import { Data, type Duration, Effect, ExecutionStrategy, Exit, Scope } from "effect"
import { join } from "node:path"
import * as ClusterSecrets from "./ClusterSecrets.js"
import { ensurePortFree, freePort } from "./FreePort.js"
import * as NatsCluster from "./NatsCluster.js"
import * as NatsServer from "./NatsServer.js"
import * as Postgres from "./Postgres.js"
import * as Service from "./Service.js"

export const GATEWAY_ENTRY = "services/gateway/src/main.ts"
export const NODE_ENTRY = "services/node/src/main.ts"
export const WA_SIM_ENTRY = "packages/wa-sim/src/main.ts"
/** The database the cluster uses on a private Postgres. */
export const DATABASE_NAME = "wacluster"

export interface LocalClusterOptions {
  /** Holds nats/, pg/ and secrets.json; reusing it keeps sessions across restarts. */
  readonly dataDir: string
  readonly nodes: number
  /** A free port when omitted. */
  readonly gatewayPort?: number | undefined
  /** Use this NATS instead of starting one (each cluster needs its own KV buckets: do not share across clusters). */
  readonly natsUrl?: string | undefined
  /**
   * 3 starts a 3-server JetStream cluster (under `<dataDir>/nats-cluster/`) instead of one nats-server, gives the
   * services all three URLs and NATS_KV_REPLICAS=3 (unless `env` says otherwise). Default 1.
   */
  readonly natsServers?: 1 | 3 | undefined
  /** Use this database instead of starting Postgres. */
  readonly databaseUrl?: string | undefined
  /** Overrides (and replaces) the admin token stored in secrets.json. */
  readonly adminToken?: string | undefined
  /** Merged into every service's environment (e.g. short LEASE_TTL in tests). */
  readonly env?: Readonly<Record<string, string>> | undefined
  /**
   * Service logs; "quiet" keeps the last lines and shows them only if a start fails; a function receives every
   * line, prefixed with the service's name. Default as in Service.
   */
  readonly logs?: Service.ServiceOutput | undefined
  /** false runs the private Postgres without fsync (tests, benchmarks). Default true. */
  readonly fsync?: boolean | undefined
  /** Entry files, relative to the repo root; default to the real services. */
  readonly gatewayEntry?: string | undefined
  readonly nodeEntry?: string | undefined
  /**
   * Runs wa-sim (the WhatsApp simulator) as its own process and points the nodes at it; its linked devices are
   * kept in `<dataDir>/wa-sim.json`. Without it the nodes connect to WhatsApp itself.
   */
  readonly simulate?: boolean | undefined
  readonly startTimeout?: Duration.DurationInput | undefined
}

export interface ClusterNode {
  readonly nodeId: string
  readonly pid: number
  readonly httpUrl: string
  readonly service: Service.ServiceProcess
}

export interface ClusterGateway {
  readonly pid: number
  readonly url: string
  readonly service: Service.ServiceProcess
}

export interface ClusterWaSim {
  readonly pid: number
  /** The WhatsApp WebSocket endpoint the nodes use. */
  readonly url: string
  /** The simulator's control API: the phone and the network (scan, messages, drops, logouts). */
  readonly controlUrl: string
  readonly rootPublicKey: string
  readonly service: Service.ServiceProcess
}

export interface LocalCluster {
  readonly dataDir: string
  readonly gatewayUrl: string
  readonly natsUrl: string
  readonly databaseUrl: string
  readonly adminToken: string
  readonly authStateKey: string
  /**
   * The private servers, when this cluster started them (undefined when given natsUrl / databaseUrl). natsServer
   * is the single nats-server (undefined with `natsServers: 3`).
   */
  readonly natsServer: NatsServer.NatsServer | undefined
  /** Every private nats-server (none when given natsUrl); each can be killed and restarted on its ports. */
  readonly natsServers: ReadonlyArray<NatsServer.NatsServer>
  readonly postgres: Postgres.PostgresServer | undefined
  readonly gateway: ClusterGateway
  readonly waSim: ClusterWaSim | undefined
  /** The nodes running now (a fresh array on every read: addNode and stopNode change it). */
  readonly nodes: ReadonlyArray<ClusterNode>
  /**
   * Starts node-<next> (or `nodeId`, e.g. to restart a stopped node under its old id) and waits until it is
   * healthy.
   */
  readonly addNode: (nodeId?: string) => Effect.Effect<ClusterNode, Service.ServiceStartError | NodeAlreadyRunning>
  /** Starts one more gateway (gateway-2, …) on a free port, stopped with the cluster. */
  readonly addGateway: Effect.Effect<ClusterGateway, Service.ServiceStartError>
  /**
   * Stops a node with `signal` (SIGTERM: graceful; SIGKILL: a crash), SIGKILL after 10 s, and resolves with its
   * exit code. For pauses use `node.service.kill("SIGSTOP")`.
   */
  readonly stopNode: (nodeId: string, signal?: NodeJS.Signals) => Effect.Effect<number, UnknownNode>
}

export class NodeAlreadyRunning extends Data.TaggedError("NodeAlreadyRunning")<{ readonly nodeId: string }> {
  override get message() {
    return `${this.nodeId} is already running`
  }
}

export class UnknownNode extends Data.TaggedError("UnknownNode")<{ readonly nodeId: string }> {
  override get message() {
    return `no running node ${this.nodeId}`
  }
}

/** Nodes start concurrently; list them as node-1, node-2, … whatever order they became healthy in. */
const nodeIndex = (node: ClusterNode) => Number(node.nodeId.slice("node-".length))

/** `SHARDS`, `LOG_LEVEL` and NATS defaults, then the caller's env, then the wiring nobody may override. */
const serviceEnv = (
  options: LocalClusterOptions,
  natsDefaults: Record<string, string>,
  wiring: Record<string, string>
): Record<string, string> => ({ SHARDS: "256", LOG_LEVEL: "Info", ...natsDefaults, ...options.env, ...wiring })

/** The output of one service: a function given in `logs` gets every line prefixed with the service's name. */
const outputFor = (options: LocalClusterOptions, name: string): Service.ServiceOutput | undefined => {
  const logs = options.logs
  return typeof logs === "function" ? (line) => logs(`${name} | ${line}`) : logs
}

export const start = Effect.fn("LocalCluster.start")(function*(options: LocalClusterOptions) {
  // Fail before starting anything when the one port a person chose is taken.
  if (options.gatewayPort !== undefined) yield* ensurePortFree(options.gatewayPort, "the gateway")
  const secrets = yield* ClusterSecrets.loadOrCreate(options.dataDir, { adminToken: options.adminToken })

  const nats = options.natsUrl !== undefined
    ? Effect.succeed({ url: options.natsUrl, server: undefined, servers: [] })
    : options.natsServers === 3
    ? Effect.map(
      NatsCluster.start({ dataDir: join(options.dataDir, "nats-cluster"), size: 3 }),
      (cluster) => ({ url: cluster.url, server: undefined, servers: cluster.servers })
    )
    : Effect.map(
      NatsServer.start({ dataDir: join(options.dataDir, "nats") }),
      (server) => ({ url: server.url, server, servers: [server] })
    )
  const natsDefaults: Record<string, string> = options.natsUrl === undefined && options.natsServers === 3
    ? { NATS_KV_REPLICAS: "3" }
    : {}
  const database = options.databaseUrl !== undefined
    ? Effect.succeed({ url: options.databaseUrl, server: undefined })
    : Effect.flatMap(
      Postgres.start({ dataDir: join(options.dataDir, "pg"), fsync: options.fsync }),
      (server) => Effect.map(server.ensureDatabase(DATABASE_NAME), (url) => ({ url, server }))
    )
  // Services stop in parallel when the cluster closes; each node also has its own scope for stopNode.
  const clusterScope = yield* Effect.scope
  const prefixWidth = Math.max(7, `node-${options.nodes}`.length)
  const startWaSim = Effect.gen(function*() {
    const [port, controlPort] = [yield* freePort, yield* freePort]
    const controlUrl = `http://127.0.0.1:${controlPort}`
    const service = yield* Service.start({
      name: "wa-sim",
      entry: WA_SIM_ENTRY,
      env: {
        WA_SIM_PORT: String(port),
        WA_SIM_CONTROL_PORT: String(controlPort),
        WA_SIM_STATE_FILE: join(options.dataDir, "wa-sim.json"),
        LOG_LEVEL: options.env?.LOG_LEVEL ?? "Info"
      },
      healthUrl: `${controlUrl}/healthz`,
      output: outputFor(options, "wa-sim"),
      prefixWidth,
      startTimeout: options.startTimeout
    }).pipe(Scope.extend(clusterScope))
    const health = yield* Effect.tryPromise({
      try: () => fetch(`${controlUrl}/healthz`).then((response) => response.json() as Promise<unknown>),
      catch: (cause) => new Service.ServiceStartError({ service: "wa-sim", reason: String(cause), logTail: [] })
    })
    const rootPublicKey = typeof health === "object" && health !== null && "rootPublicKey" in health &&
        typeof health.rootPublicKey === "string"
      ? health.rootPublicKey
      : yield* new Service.ServiceStartError({
        service: "wa-sim",
        reason: "its /healthz did not give the root public key",
        logTail: []
      })
    const waSim: ClusterWaSim = {
      pid: service.pid,
      url: `ws://127.0.0.1:${port}/ws/chat`,
      controlUrl,
      rootPublicKey,
      service
    }
    return waSim
  })
  // wa-sim needs neither NATS nor Postgres: all three start at once. Started before the services' scope is forked,
  // so it closes after them: nodes never see it vanish first.
  const [{ server: natsServer, servers: natsServers, url: natsUrl }, { server: postgres, url: databaseUrl }, waSim] =
    yield* Effect.all(
      [nats, database, options.simulate === true ? startWaSim : Effect.succeed(undefined)],
      { concurrency: "unbounded" }
    )
  const whatsApp: Record<string, string> = waSim === undefined
    ? {}
    : { WA_WEBSOCKET_URL: waSim.url, WA_ROOT_PUBLIC_KEY: waSim.rootPublicKey }

  const servicesScope = yield* Scope.fork(clusterScope, ExecutionStrategy.parallel)
  const common = {
    HOST: "127.0.0.1",
    DATABASE_URL: databaseUrl,
    NATS_URL: natsUrl
  }

  let gateways = 0
  const startGateway = Effect.gen(function*() {
    const first = gateways++ === 0
    const port = (first ? options.gatewayPort : undefined) ?? (yield* freePort)
    const url = `http://127.0.0.1:${port}`
    const service = yield* Service.start({
      name: first ? "gateway" : `gateway-${gateways}`,
      entry: options.gatewayEntry ?? GATEWAY_ENTRY,
      env: serviceEnv(options, natsDefaults, {
        ...common,
        PORT: String(port),
        ADMIN_TOKEN: secrets.adminToken,
        // Webhook secrets are kept encrypted with it.
        AUTH_STATE_KEY: secrets.authStateKey
      }),
      healthUrl: `${url}/healthz`,
      output: outputFor(options, "gateway"),
      prefixWidth,
      startTimeout: options.startTimeout
    }).pipe(Scope.extend(servicesScope))
    const gateway: ClusterGateway = { pid: service.pid, url, service }
    return gateway
  })

  const running = new Map<string, { readonly node: ClusterNode; readonly scope: Scope.CloseableScope }>()
  let nextIndex = 1

  const startNode = (requestedId?: string) =>
    Effect.gen(function*() {
      if (requestedId !== undefined && running.has(requestedId)) {
        return yield* new NodeAlreadyRunning({ nodeId: requestedId })
      }
      const nodeId = requestedId ?? `node-${nextIndex++}`
      const port = yield* freePort
      const httpUrl = `http://127.0.0.1:${port}`
      const scope = yield* Scope.fork(servicesScope, ExecutionStrategy.sequential)
      const service = yield* Service.start({
        name: nodeId,
        entry: options.nodeEntry ?? NODE_ENTRY,
        env: serviceEnv(options, natsDefaults, {
          ...common,
          NODE_ID: nodeId,
          HTTP_PORT: String(port),
          AUTH_STATE_KEY: secrets.authStateKey,
          ...whatsApp
        }),
        healthUrl: `${httpUrl}/healthz`,
        output: outputFor(options, nodeId),
        prefixWidth,
        startTimeout: options.startTimeout
      }).pipe(
        Scope.extend(scope),
        Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void))
      )
      const node: ClusterNode = { nodeId, pid: service.pid, httpUrl, service }
      running.set(nodeId, { node, scope })
      return node
    })

  const [gateway] = yield* Effect.all([startGateway, ...Array.from({ length: options.nodes }, () => startNode())], {
    concurrency: "unbounded"
  })

  const stopNode = (nodeId: string, signal: NodeJS.Signals = "SIGTERM") =>
    Effect.gen(function*() {
      const entry = running.get(nodeId)
      if (entry === undefined) return yield* new UnknownNode({ nodeId })
      running.delete(nodeId)
      const exitCode = yield* entry.node.service.stop(signal)
      yield* Scope.close(entry.scope, Exit.void)
      return exitCode
    }).pipe(Effect.withSpan("LocalCluster.stopNode", { attributes: { nodeId, signal } }))

  const cluster: LocalCluster = {
    dataDir: options.dataDir,
    gatewayUrl: gateway.url,
    natsUrl,
    databaseUrl,
    adminToken: secrets.adminToken,
    authStateKey: secrets.authStateKey,
    natsServer,
    natsServers,
    postgres,
    gateway,
    waSim,
    get nodes() {
      return Array.from(running.values(), (entry) => entry.node).sort((a, b) => nodeIndex(a) - nodeIndex(b))
    },
    addNode: (nodeId) => startNode(nodeId).pipe(Effect.withSpan("LocalCluster.addNode")),
    addGateway: startGateway.pipe(Effect.withSpan("LocalCluster.addGateway")),
    stopNode
  }
  return cluster
})
