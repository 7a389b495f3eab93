/**
 * A JetStream cluster of nats-server processes on this machine, owned by a Scope. Each server gets a generated
 * configuration file (`<dataDir>/<name>.conf`, the same shape as the operators' examples in infra/nats/), its own
 * storage (`<dataDir>/<name>/`) and free ports for clients, routes and monitoring. The cluster is ready when every
 * server is healthy and sees a JetStream meta leader. Any server can be killed and restarted on the same ports and
 * storage while the scope is open: with 3 servers, JetStream keeps serving (replicated streams included) as long
 * as 2 run. Losing a stream's leader pauses its writes until the others elect a new one: nats-server 2.9 takes
 * about 4-9 s for that, and does not let us configure it.
 */
import { type Duration, Effect, Schedule, Schema } from "effect"
import { mkdir, writeFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import { freePort } from "./FreePort.js"
import { releaseOnFailure } from "./internal/ChildProcess.js"
import { clearLeftovers } from "./internal/Leftovers.js"
import { httpOk } from "./internal/Readiness.js"
import { findNatsServer, type NatsServer, NatsServerError, supervise } from "./NatsServer.js"

export interface NatsClusterOptions {
  /** Holds the generated configs and one storage directory per server; reused if present. */
  readonly dataDir: string
  /** How many servers; 3 by default. JetStream needs a majority running: 3 servers tolerate losing 1. */
  readonly size?: number | undefined
  /** The route cluster's and JetStream's cluster name; "wacluster" by default. */
  readonly clusterName?: string | undefined
  readonly host?: string | undefined
  readonly binDirs?: ReadonlyArray<string> | undefined
  readonly startTimeout?: Duration.DurationInput | undefined
  /** Receives every log line of every server, with the server's name. */
  readonly onLine?: ((server: string, line: string) => void) | undefined
}

/** One server of the cluster; `kill` and `restart` keep its name, ports, configuration and storage. */
export interface ClusterServer extends NatsServer {
  /** `server_name`, e.g. "nats-2" (also the JetStream peer name in /jsz). */
  readonly name: string
  readonly clusterPort: number
  readonly monitorUrl: string
  readonly configFile: string
  readonly storeDir: string
}

export interface NatsCluster {
  readonly name: string
  /** Every server's client URL, comma separated: what NATS_URL takes. */
  readonly url: string
  readonly urls: ReadonlyArray<string>
  readonly servers: ReadonlyArray<ClusterServer>
}

/** Everything a server's configuration file says. */
export interface ServerConfig {
  readonly serverName: string
  readonly clusterName: string
  readonly host: string
  readonly port: number
  readonly monitorPort: number
  readonly clusterPort: number
  readonly storeDir: string
  /** The other servers' route listeners ("host:port"); none for a single server, which then has no cluster block. */
  readonly routes: ReadonlyArray<string>
}

const quote = (value: string) => JSON.stringify(value)

/**
 * A nats-server configuration file. The generated configs and the committed examples in infra/nats/ both come
 * from here, so an operator reads exactly what the tests run.
 */
export const renderConfig = (config: ServerConfig): string => {
  const size = config.routes.length + 1
  const lines = [
    size === 1
      ? `# ${config.serverName}: a single nats-server with JetStream.`
      : `# ${config.serverName}: one of ${size} nats-server processes forming the JetStream cluster ` +
        `${quote(config.clusterName)}.`,
    "# Written by renderConfig in infra/src/NatsCluster.ts (see infra/nats/README.md).",
    "",
    `server_name: ${quote(config.serverName)}`,
    "",
    "# Clients. NATS_URL lists every server of the cluster, comma separated.",
    `listen: ${quote(`${config.host}:${config.port}`)}`,
    "",
    "# Monitoring: /healthz, /varz, /routez, /jsz (meta_cluster.leader names the JetStream meta leader).",
    `http: ${quote(`${config.host}:${config.monitorPort}`)}`,
    "",
    "jetstream {",
    "  # A relative path is resolved from the directory nats-server is started in.",
    `  store_dir: ${quote(config.storeDir)}`,
    "}"
  ]
  if (size > 1) {
    lines.push(
      "",
      "cluster {",
      "  # JetStream uses it as its cluster name too; every server of one cluster must agree on it.",
      `  name: ${quote(config.clusterName)}`,
      "  # Routes between the servers: each server listens here and connects to all the others.",
      `  listen: ${quote(`${config.host}:${config.clusterPort}`)}`,
      "  routes: [",
      ...config.routes.map((route) => `    ${quote(`nats-route://${route}`)}`),
      "  ]",
      "}"
    )
  }
  return `${lines.join("\n")}\n`
}

export interface ServerPorts {
  readonly port: number
  readonly clusterPort: number
  readonly monitorPort: number
}

/** The configs of a cluster with one server per entry of `ports`, named nats-1, nats-2, … in that order. */
export const clusterConfigs = (options: {
  readonly clusterName: string
  readonly host: string
  readonly ports: ReadonlyArray<ServerPorts>
  readonly storeDir: (serverName: string) => string
}): ReadonlyArray<ServerConfig> => {
  const servers = options.ports.map((ports, index) => ({ serverName: `nats-${index + 1}`, ...ports }))
  return servers.map((server) => ({
    serverName: server.serverName,
    clusterName: options.clusterName,
    host: options.host,
    port: server.port,
    monitorPort: server.monitorPort,
    clusterPort: server.clusterPort,
    storeDir: options.storeDir(server.serverName),
    routes: servers.filter((other) => other !== server).map((other) => `${options.host}:${other.clusterPort}`)
  }))
}

/** The committed examples in infra/nats/: clients on 4222-4224, routes on 6222-6224, monitoring on 8222-8224. */
export const exampleConfigs: ReadonlyArray<ServerConfig> = clusterConfigs({
  clusterName: "wacluster",
  host: "127.0.0.1",
  ports: [0, 1, 2].map((offset) => ({ port: 4222 + offset, clusterPort: 6222 + offset, monitorPort: 8222 + offset })),
  storeDir: (serverName) => `data/${serverName}`
})

const Jsz = Schema.Struct({
  meta_cluster: Schema.optional(Schema.Struct({ leader: Schema.optional(Schema.String) }))
})

/** The JetStream meta leader this server sees (its /jsz), or "" when it sees none (yet). */
export const metaLeader = (monitorUrl: string): Effect.Effect<string> =>
  Effect.tryPromise({
    try: (signal) =>
      fetch(`${monitorUrl}/jsz`, { signal: AbortSignal.any([signal, AbortSignal.timeout(1_000)]) }).then(
        (response) => response.json() as Promise<unknown>
      ),
    catch: () => "unreachable"
  }).pipe(
    Effect.flatMap(Schema.decodeUnknown(Jsz)),
    Effect.map((jsz) => jsz.meta_cluster?.leader ?? ""),
    Effect.orElseSucceed(() => "")
  )

/** Healthy, and (in a cluster) part of a JetStream meta group that has a leader. */
const isReady = (monitorUrl: string, clustered: boolean): Effect.Effect<boolean> =>
  Effect.flatMap(
    httpOk(`${monitorUrl}/healthz?js-enabled-only=true`),
    (healthy) =>
      healthy && clustered ? Effect.map(metaLeader(monitorUrl), (leader) => leader !== "") : Effect.succeed(healthy)
  )

/** Free ports for `size` servers, all distinct (the kernel may hand the same one out twice in a row). */
const allocatePorts = (size: number): Effect.Effect<ReadonlyArray<ServerPorts>> =>
  Effect.gen(function*() {
    const taken = new Set<number>()
    const next = freePort.pipe(
      Effect.repeat({ until: (port) => !taken.has(port) }),
      Effect.tap((port) => Effect.sync(() => taken.add(port)))
    )
    return yield* Effect.forEach(
      Array.from({ length: size }),
      () => Effect.all({ port: next, clusterPort: next, monitorPort: next })
    )
  })

export const start = Effect.fn("NatsCluster.start")(function*(options: NatsClusterOptions) {
  const size = options.size ?? 3
  if (!Number.isInteger(size) || size < 1) {
    return yield* new NatsServerError({ reason: `a cluster needs a whole number of servers, not ${size}`, logTail: [] })
  }
  const binary = yield* findNatsServer(options.binDirs)
  const host = options.host ?? "127.0.0.1"
  const clusterName = options.clusterName ?? "wacluster"
  const dataDir = resolve(options.dataDir)
  const configFile = (serverName: string) => join(dataDir, `${serverName}.conf`)
  yield* Effect.promise(() => mkdir(dataDir, { recursive: true }))
  for (let index = 1; index <= size; index++) {
    const file = configFile(`nats-${index}`)
    yield* clearLeftovers({
      what: "nats-server",
      binary: "nats-server",
      args: ["-c", file],
      dataDir,
      signal: "SIGTERM"
    })
  }

  const attempt = Effect.gen(function*() {
    const configs = clusterConfigs({
      clusterName,
      host,
      ports: yield* allocatePorts(size),
      storeDir: (serverName) => join(dataDir, serverName)
    })
    yield* Effect.forEach(configs, (config) =>
      Effect.promise(async () => {
        await mkdir(config.storeDir, { recursive: true })
        await writeFile(configFile(config.serverName), renderConfig(config))
      }))
    // Concurrently: no server sees a meta leader before a majority of them runs.
    const servers = yield* Effect.forEach(configs, (config) =>
      Effect.gen(function*() {
        const monitorUrl = `http://${host}:${config.monitorPort}`
        const supervised = yield* supervise({
          label: config.serverName,
          binary,
          args: ["-c", configFile(config.serverName)],
          ports: [config.port, config.clusterPort, config.monitorPort],
          ready: isReady(monitorUrl, size > 1),
          startTimeout: options.startTimeout ?? "30 seconds",
          onLine: options.onLine === undefined ? undefined : (line) => options.onLine?.(config.serverName, line)
        })
        const server: ClusterServer = {
          name: config.serverName,
          url: `nats://${host}:${config.port}`,
          port: config.port,
          clusterPort: config.clusterPort,
          monitorPort: config.monitorPort,
          monitorUrl,
          configFile: configFile(config.serverName),
          storeDir: config.storeDir,
          get pid() {
            return supervised.process.pid
          },
          get process() {
            return supervised.process
          },
          kill: supervised.kill,
          restart: supervised.restart,
          isRunning: supervised.isRunning
        }
        return server
      }), { concurrency: "unbounded" })
    const urls = servers.map((server) => server.url)
    const cluster: NatsCluster = { name: clusterName, url: urls.join(","), urls, servers }
    return cluster
  })

  // A free port can be taken between probing and binding; the routes name every port, so retry them all.
  return yield* attempt.pipe(
    releaseOnFailure,
    Effect.retry({ schedule: Schedule.recurs(3), while: (error) => error._tag === "PortInUse" })
  )
})
