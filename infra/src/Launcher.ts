/**
 * What `pnpm start` does, minus the process plumbing in main.ts: parse flags, start a LocalCluster, make sure a
 * default tenant exists, publish `.data/cluster.json` and tell the person how to call the API.
 */
import { Console, Data, Effect, Either, Schema } from "effect"
import { rm, writeFile } from "node:fs/promises"
import { join, relative } from "node:path"
import { parseArgs as parseNodeArgs } from "node:util"
import * as ClusterSecrets from "./ClusterSecrets.js"
import * as LocalCluster from "./LocalCluster.js"
import { repoRoot } from "./Service.js"

export const usage = `Usage: pnpm start [--nodes N] [--port P] [--data-dir DIR] [--simulate]

Starts a local wacluster: nats-server and Postgres (private, under .data/), one gateway and N nodes.
Stops everything on Ctrl-C. Details for tools are written to .data/cluster.json.

  --nodes N        number of nodes (default 2)
  --port P         gateway port on 127.0.0.1 (default 8080)
  --data-dir DIR   where state lives (default .data/ in the repo); reuse keeps sessions across restarts
  --simulate       use the WhatsApp simulator (wa-sim) instead of WhatsApp
  --help           this text

Environment: NATS_URL / DATABASE_URL use an existing NATS / Postgres instead of private ones.`

export type LaunchCommand =
  | {
    readonly _tag: "Run"
    readonly nodes: number
    readonly port: number
    readonly dataDir: string
    readonly simulate: boolean
  }
  | { readonly _tag: "Help" }

export class UsageError extends Data.TaggedError("UsageError")<{ readonly problem: string }> {
  override get message() {
    return `${this.problem}\n\n${usage}`
  }
}

const positiveInt = (flag: string, value: string | undefined, fallback: number, max: number) => {
  if (value === undefined) return Either.right(fallback)
  const n = Number(value)
  return Number.isInteger(n) && n >= 1 && n <= max
    ? Either.right(n)
    : Either.left(new UsageError({ problem: `${flag} must be a whole number from 1 to ${max}, got "${value}"` }))
}

export const defaultDataDir: string = join(repoRoot, ".data")

/** `argv` without the node and script entries. */
export const parseArgs = (argv: ReadonlyArray<string>): Either.Either<LaunchCommand, UsageError> => {
  const parsed = Either.try({
    try: () =>
      parseNodeArgs({
        args: [...argv],
        options: {
          nodes: { type: "string" },
          port: { type: "string" },
          "data-dir": { type: "string" },
          simulate: { type: "boolean", default: false },
          help: { type: "boolean", short: "h", default: false }
        },
        strict: true,
        allowPositionals: false
      }).values,
    catch: (error) => new UsageError({ problem: error instanceof Error ? error.message : String(error) })
  })
  return Either.flatMap(parsed, (values): Either.Either<LaunchCommand, UsageError> => {
    if (values.help) return Either.right({ _tag: "Help" })
    return Either.all({
      nodes: positiveInt("--nodes", values.nodes, 2, 64),
      port: positiveInt("--port", values.port, 8080, 65535)
    }).pipe(
      Either.map(({ nodes, port }): LaunchCommand => ({
        _tag: "Run",
        nodes,
        port,
        dataDir: values["data-dir"] ?? defaultDataDir,
        simulate: values.simulate
      }))
    )
  })
}

export class TenantSetupError extends Data.TaggedError("TenantSetupError")<{ readonly reason: string }> {
  override get message() {
    return `could not create the default tenant: ${this.reason}`
  }
}

const TenantCreated = Schema.Struct({
  tenant: Schema.Struct({ id: Schema.String, name: Schema.String, createdAt: Schema.String }),
  token: Schema.String
})

const request = (url: string, init: RequestInit) =>
  Effect.tryPromise({
    try: async (signal) => {
      const response = await fetch(url, { ...init, signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]) })
      return { status: response.status, body: await response.text() }
    },
    catch: (cause) => new TenantSetupError({ reason: `${init.method ?? "GET"} ${url}: ${String(cause)}` })
  })

/** POST /tenants with the admin token; returns the new tenant's token. */
export const createTenant = Effect.fn("Launcher.createTenant")(function*(
  gatewayUrl: string,
  adminToken: string,
  name: string
) {
  const response = yield* request(`${gatewayUrl}/tenants`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ name })
  })
  if (response.status !== 201 && response.status !== 200) {
    return yield* new TenantSetupError({ reason: `POST /tenants answered ${response.status}: ${response.body}` })
  }
  const created = yield* Schema.decodeUnknown(Schema.parseJson(TenantCreated))(response.body).pipe(
    Effect.mapError((error) => new TenantSetupError({ reason: `unexpected POST /tenants reply: ${error.message}` }))
  )
  return created.token
})

/** A stored token is only dropped when the gateway says it is not valid (e.g. the database was wiped). */
const stillValid = (gatewayUrl: string, tenantToken: string) =>
  request(`${gatewayUrl}/sessions?limit=1`, { headers: { authorization: `Bearer ${tenantToken}` } }).pipe(
    Effect.map((response) => response.status !== 401),
    Effect.orElseSucceed(() => true)
  )

/**
 * The default tenant's token: the one in secrets.json when it was made for this database and still works,
 * otherwise a new tenant "default" (remembered for the next start).
 */
export const ensureDefaultTenant = Effect.fn("Launcher.ensureDefaultTenant")(function*(options: {
  readonly dataDir: string
  readonly gatewayUrl: string
  readonly adminToken: string
  /** "local" for the private Postgres, the URL for an external one. */
  readonly database: string
}) {
  const secrets = yield* ClusterSecrets.loadOrCreate(options.dataDir)
  if (
    secrets.tenantToken !== undefined && secrets.tenantDatabase === options.database &&
    (yield* stillValid(options.gatewayUrl, secrets.tenantToken))
  ) {
    return secrets.tenantToken
  }
  const token = yield* createTenant(options.gatewayUrl, options.adminToken, "default")
  yield* ClusterSecrets.update(
    options.dataDir,
    (current) => new ClusterSecrets.ClusterSecrets({ ...current, tenantToken: token, tenantDatabase: options.database })
  )
  return token
})

export interface ClusterInfo {
  readonly gatewayUrl: string
  readonly natsUrl: string
  readonly databaseUrl: string
  readonly adminToken: string
  readonly tenantToken: string
  readonly nodes: ReadonlyArray<{ readonly nodeId: string; readonly pid: number }>
  /** With --simulate: the WhatsApp simulator's WebSocket endpoint and its control API (the virtual phone). */
  readonly waSimUrl?: string
  readonly waSimControlUrl?: string
}

export const clusterInfoPath = (dataDir: string): string => join(dataDir, "cluster.json")

/** Writes cluster.json for the life of the scope: its presence means "this cluster is running". */
export const publishClusterInfo = (dataDir: string, info: ClusterInfo) =>
  Effect.acquireRelease(
    Effect.promise(() => writeFile(clusterInfoPath(dataDir), `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 })),
    () => Effect.promise(() => rm(clusterInfoPath(dataDir), { force: true }))
  )

/** The local cluster lets webhooks reach a receiver on this machine. */
export const LOCAL_WEBHOOK_NETWORKS = "127.0.0.0/8,::1/128"

/** The friendly block printed once the cluster is up. */
export const howToCall = (info: ClusterInfo, dataDir: string): string => {
  const gw = info.gatewayUrl
  const where = relative(process.cwd(), clusterInfoPath(dataDir)) || clusterInfoPath(dataDir)
  return `
wacluster is up: gateway ${gw}, ${info.nodes.length} node(s): ${info.nodes.map((n) => n.nodeId).join(", ")}
Tokens and URLs are in ${where}.

  # the cities a session can live in
  curl ${gw}/cities

  # create a session with the default tenant's token
  export TENANT_TOKEN=${info.tenantToken}
  curl -X POST ${gw}/sessions -H "Authorization: Bearer $TENANT_TOKEN" \\
    -H 'content-type: application/json' -d '{"name":"Support-Jakarta-Prod","city":"jakarta"}'

  # the reply has session.id and apiKey.key; the session's own calls use that key
  curl ${gw}/sessions/<session.id>/status -H "x-api-key: <apiKey.key>"

  # the QR code to link it (PNG; ?format=raw for the string, ?format=svg)
  curl ${gw}/sessions/<session.id>/qr -H "x-api-key: <apiKey.key>" -o qr.png

  # its events on a webhook: this local cluster lets webhooks target this machine (loopback,
  # WEBHOOK_ALLOW_NETWORKS=${LOCAL_WEBHOOK_NETWORKS}); a production cluster refuses private and loopback targets
  curl -X POST ${gw}/sessions/<session.id>/webhooks -H "Authorization: Bearer $TENANT_TOKEN" \\
    -H 'content-type: application/json' -d '{"url":"http://127.0.0.1:3000/webhook"}'
${info.waSimControlUrl === undefined ? "" : simulatorHowTo(gw, info.waSimControlUrl)}
Press Ctrl-C to stop the cluster.
`
}

const simulatorHowTo = (gw: string, control: string) => `
  # WhatsApp is simulated (wa-sim); its control API plays the phone. Scan the raw QR string as a phone would:
  QR=$(curl -s "${gw}/sessions/<session.id>/qr?format=raw" -H "x-api-key: <apiKey.key>" \\
    | node -pe 'JSON.parse(require("fs").readFileSync(0, "utf8")).qr')
  curl -X POST ${control}/scan -H 'content-type: application/json' \\
    -d "{\\"qr\\":\\"$QR\\",\\"phoneNumber\\":\\"6281234567890\\"}"
  # then: a text from a contact, a dropped connection, a logout on the phone
  curl -X POST ${control}/devices/<jid>/messages -H 'content-type: application/json' \\
    -d '{"from":"628111222333","text":"hello"}'
  curl -X POST ${control}/devices/<jid>/drop
  curl ${control}/stats
`

export interface RunOptions {
  readonly dataDir: string
  readonly nodes: number
  readonly port: number
  readonly natsUrl?: string | undefined
  readonly databaseUrl?: string | undefined
  readonly logs?: "inherit" | "quiet" | undefined
  readonly gatewayEntry?: string | undefined
  readonly nodeEntry?: string | undefined
  /** Runs wa-sim and points the nodes at it. */
  readonly simulate?: boolean | undefined
  /** Where progress and the how-to block go; stdout by default. */
  readonly announce?: ((text: string) => Effect.Effect<void>) | undefined
}

/** Starts the cluster, ensures the default tenant, publishes cluster.json and prints how to use it. */
export const run = Effect.fn("Launcher.run")(function*(options: RunOptions) {
  const announce = options.announce ?? Console.log
  yield* announce(
    `Starting wacluster (${options.nodes} node(s), gateway port ${options.port}` +
      `${options.simulate === true ? ", WhatsApp simulated by wa-sim" : ""}) ...`
  )
  const cluster = yield* LocalCluster.start({
    dataDir: options.dataDir,
    nodes: options.nodes,
    gatewayPort: options.port,
    natsUrl: options.natsUrl,
    databaseUrl: options.databaseUrl,
    logs: options.logs ?? "inherit",
    gatewayEntry: options.gatewayEntry,
    nodeEntry: options.nodeEntry,
    simulate: options.simulate,
    env: { WEBHOOK_ALLOW_NETWORKS: LOCAL_WEBHOOK_NETWORKS }
  })
  const tenantToken = yield* ensureDefaultTenant({
    dataDir: options.dataDir,
    gatewayUrl: cluster.gatewayUrl,
    adminToken: cluster.adminToken,
    database: options.databaseUrl ?? "local"
  })
  const info: ClusterInfo = {
    gatewayUrl: cluster.gatewayUrl,
    natsUrl: cluster.natsUrl,
    databaseUrl: cluster.databaseUrl,
    adminToken: cluster.adminToken,
    tenantToken,
    nodes: cluster.nodes.map(({ nodeId, pid }) => ({ nodeId, pid })),
    ...(cluster.waSim === undefined ? {} : { waSimUrl: cluster.waSim.url, waSimControlUrl: cluster.waSim.controlUrl })
  }
  yield* publishClusterInfo(options.dataDir, info)
  yield* announce(howToCall(info, options.dataDir))
  return { info, cluster }
})

export class ServiceDied extends Data.TaggedError("ServiceDied")<{
  readonly service: string
  readonly exitCode: number
}> {
  override get message() {
    return `${this.service} exited on its own (code ${this.exitCode}), so the cluster was stopped. ` +
      "Its log lines above say why."
  }
}

/**
 * `run`, then keep the cluster up until interrupted. A service that exits on its own ends it (failing with
 * ServiceDied) rather than leaving a half cluster that looks healthy.
 */
export const serve = Effect.fn("Launcher.serve")(function*(options: RunOptions) {
  const { cluster } = yield* run(options)
  const services = [
    cluster.gateway.service,
    ...cluster.nodes.map((node) => node.service),
    ...(cluster.waSim === undefined ? [] : [cluster.waSim.service])
  ]
  // raceAll settles on the first success, so each racer succeeds with the death it saw.
  const died = yield* Effect.raceAll(
    services.map((service) =>
      Effect.map(service.exited, (exitCode) => new ServiceDied({ service: service.name, exitCode }))
    )
  )
  return yield* died
})
