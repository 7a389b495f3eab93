/**
 * Routing benchmark: `GET /sessions/{id}/status` through gateway → NATS → owner node → session actor, under
 * load from autocannon, beside a raw NATS request/reply baseline (client here, responder in its own process)
 * measured in the same run. Prints both and their ratio.
 *
 *   pnpm bench:route [--duration 15] [--connections 50] [--sessions 200] [--nodes 2]
 */
import { connect } from "@nats-io/transport-node"
import * as LocalCluster from "@wacluster/infra/LocalCluster"
import autocannon from "autocannon"
import { Effect, Exit, Scope } from "effect"
import { spawn } from "node:child_process"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { call, text } from "../support/Gateway.js"

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "15" },
    connections: { type: "string", default: "50" },
    sessions: { type: "string", default: "200" },
    nodes: { type: "string", default: "2" }
  }
})
const duration = Number(values.duration)
const connections = Number(values.connections)
const sessionCount = Number(values.sessions)

interface Figures {
  readonly requestsPerSecond: number
  readonly p50: number
  readonly p99: number
  readonly errors: number
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN

/** Raw NATS request/reply with `concurrency` requests in flight, for `seconds`. */
const natsBaseline = async (url: string, seconds: number, concurrency: number): Promise<Figures> => {
  const responder = spawn(process.execPath, [
    "--import",
    "tsx",
    fileURLToPath(new URL("nats-responder.ts", import.meta.url)),
    url
  ], {
    stdio: ["ignore", "pipe", "inherit"]
  })
  await new Promise<void>((resolve, reject) => {
    responder.stdout.on("data", (chunk: Buffer) => chunk.toString().includes("ready") && resolve())
    responder.once("exit", (code) => reject(new Error(`responder exited with ${code}`)))
  })
  const nc = await connect({ servers: url })
  const payload = new TextEncoder().encode(
    JSON.stringify({ _tag: "GetStatus", sessionId: "sess_00000000000000000000" })
  )
  const latencies: Array<number> = []
  let errors = 0
  const until = performance.now() + seconds * 1000
  const worker = async () => {
    while (performance.now() < until) {
      const started = performance.now()
      try {
        await nc.request("bench.echo", payload, { timeout: 2000 })
        latencies.push(performance.now() - started)
      } catch {
        errors++
      }
    }
  }
  const began = performance.now()
  await Promise.all(Array.from({ length: concurrency }, worker))
  const elapsed = (performance.now() - began) / 1000
  await nc.close()
  responder.kill("SIGTERM")
  latencies.sort((a, b) => a - b)
  return {
    requestsPerSecond: latencies.length / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    errors
  }
}

const routeLoad = async (gateway: string, keys: ReadonlyArray<{ id: string; key: string }>, seconds: number) => {
  const result = await autocannon({
    url: gateway,
    connections,
    duration: seconds,
    requests: keys.map(({ id, key }) => ({
      method: "GET" as const,
      path: `/sessions/${id}/status`,
      headers: { "x-api-key": key }
    }))
  })
  return {
    requestsPerSecond: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.non2xx
  } satisfies Figures
}

const main = async () => {
  const scope = Effect.runSync(Scope.make())
  const dataDir = await mkdtemp(join(tmpdir(), "wacluster-bench-"))
  await chmod(dataDir, 0o755)
  try {
    process.stdout.write(`starting a cluster with ${values.nodes} nodes…\n`)
    const cluster = await Effect.runPromise(Scope.extend(
      LocalCluster.start({
        dataDir,
        nodes: Number(values.nodes),
        logs: "quiet",
        fsync: false,
        env: { LOG_LEVEL: "Warn" }
      }),
      scope
    ))
    const gateway = cluster.gatewayUrl
    const tenant = await call(gateway, "POST", "/tenants", { bearer: cluster.adminToken, json: { name: "bench" } })
    const token = text(tenant.body, "token")
    const keys: Array<{ id: string; key: string }> = []
    for (let i = 0; i < sessionCount; i++) {
      const created = await call(gateway, "POST", "/sessions", {
        bearer: token,
        json: { name: `bench-${i}`, city: "jakarta" }
      })
      keys.push({ id: text(created.body, "session", "id"), key: text(created.body, "apiKey", "key") })
    }
    // Every session answers once before measuring (actors started, shards settled).
    for (const { id, key } of keys) {
      for (let attempt = 0;; attempt++) {
        const reply = await call(gateway, "GET", `/sessions/${id}/status`, { apiKey: key })
        if (reply.status === 200) break
        if (attempt > 50) throw new Error(`session ${id} never answered: ${JSON.stringify(reply.body)}`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
    process.stdout.write(`warming up…\n`)
    await routeLoad(gateway, keys, 3)

    process.stdout.write(`measuring raw NATS request/reply for ${duration} s…\n`)
    const baseline = await natsBaseline(cluster.natsUrl, duration, connections)
    process.stdout.write(`measuring GET /sessions/{id}/status for ${duration} s…\n`)
    const route = await routeLoad(gateway, keys, duration)

    const row = (name: string, f: Figures) =>
      `${name.padEnd(34)} ${f.requestsPerSecond.toFixed(0).padStart(8)} req/s   p50 ${
        f.p50.toFixed(2).padStart(7)
      } ms   ` +
      `p99 ${f.p99.toFixed(2).padStart(7)} ms   errors ${f.errors}`
    process.stdout.write([
      "",
      `route benchmark: ${values.nodes} nodes, ${sessionCount} sessions, ${connections} concurrent, ${duration} s each`,
      row("raw NATS request/reply (baseline)", baseline),
      row("gateway → NATS → node → actor", route),
      `ratio (route / baseline): throughput ${(route.requestsPerSecond / baseline.requestsPerSecond).toFixed(2)}×, ` +
      `p50 latency ${(route.p50 / baseline.p50).toFixed(2)}×, p99 latency ${(route.p99 / baseline.p99).toFixed(2)}×`,
      ""
    ].join("\n"))
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await rm(dataDir, { recursive: true, force: true })
  }
}

await main()
