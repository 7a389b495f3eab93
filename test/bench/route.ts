/**
 * Routing benchmark: `GET /sessions/{id}/status` through gateway → NATS → owner node → session actor, under
 * load from autocannon, beside a raw NATS request/reply baseline (client here, responder in its own process)
 * measured in the same run. Prints both and their ratio.
 *
 *   pnpm bench:route [--duration 15] [--connections 50] [--sessions 200] [--nodes 2]
 */
import { connect } from "@nats-io/transport-node"
import autocannon from "autocannon"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { createSessions, type Figures, fromAutocannon, fromLatencies, row, withCluster } from "./cluster.js"

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
  return fromLatencies(latencies, elapsed, errors)
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
  return fromAutocannon(result)
}

const main = () =>
  withCluster(
    { nodes: Number(values.nodes), logs: "quiet", fsync: false, env: { LOG_LEVEL: "Warn" } },
    async (cluster) => {
      const gateway = cluster.gatewayUrl
      const keys = await createSessions(cluster, sessionCount)
      process.stdout.write(`warming up…\n`)
      await routeLoad(gateway, keys, 3)

      process.stdout.write(`measuring raw NATS request/reply for ${duration} s…\n`)
      const baseline = await natsBaseline(cluster.natsUrl, duration, connections)
      process.stdout.write(`measuring GET /sessions/{id}/status for ${duration} s…\n`)
      const route = await routeLoad(gateway, keys, duration)

      process.stdout.write([
        "",
        `route benchmark: ${values.nodes} nodes, ${sessionCount} sessions, ${connections} concurrent, ${duration} s each`,
        row("raw NATS request/reply (baseline)", baseline, "req/s"),
        row("gateway → NATS → node → actor", route, "req/s"),
        `ratio (route / baseline): throughput ${(route.perSecond / baseline.perSecond).toFixed(2)}×, ` +
        `p50 latency ${(route.p50 / baseline.p50).toFixed(2)}×, p99 latency ${(route.p99 / baseline.p99).toFixed(2)}×`,
        ""
      ].join("\n"))
    }
  )

process.stdout.write(`starting a cluster with ${values.nodes} nodes…\n`)
await main()
