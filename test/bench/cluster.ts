/**
 * What the HTTP benchmarks share: a private cluster for the run, a tenant with sessions that have all answered once,
 * and the figures they print.
 */
import * as LocalCluster from "@wacluster/infra/LocalCluster"
import type autocannon from "autocannon"
import { Effect, Exit, Scope } from "effect"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { call, text } from "../support/Gateway.js"

export interface Figures {
  readonly perSecond: number
  readonly p50: number
  readonly p99: number
  readonly errors: number
}

/** An autocannon run's figures. */
export const fromAutocannon = (result: autocannon.Result): Figures => ({
  perSecond: result.requests.average,
  p50: result.latency.p50,
  p99: result.latency.p99,
  errors: result.errors + result.non2xx
})

/** The figures of a baseline measured here: every answered request's latency (ms), over `seconds`. */
export const fromLatencies = (latencies: Array<number>, seconds: number, errors: number): Figures => {
  latencies.sort((a, b) => a - b)
  return {
    perSecond: latencies.length / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    errors
  }
}

export const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN

/** One line of a benchmark's table. */
export const row = (name: string, f: Figures, unit: string) =>
  `${name.padEnd(38)} ${f.perSecond.toFixed(0).padStart(8)} ${unit}   p50 ${f.p50.toFixed(2).padStart(7)} ms   ` +
  `p99 ${f.p99.toFixed(2).padStart(7)} ms   errors ${f.errors}`

/** Runs `body` against a private cluster in a temporary directory, stopped and removed afterwards. */
export const withCluster = async <A>(
  options: Omit<LocalCluster.LocalClusterOptions, "dataDir">,
  body: (cluster: LocalCluster.LocalCluster) => Promise<A>
): Promise<A> => {
  const scope = Effect.runSync(Scope.make())
  const dataDir = await mkdtemp(join(tmpdir(), "wacluster-bench-"))
  await chmod(dataDir, 0o755)
  try {
    const cluster = await Effect.runPromise(Scope.extend(LocalCluster.start({ ...options, dataDir }), scope))
    return await body(cluster)
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await rm(dataDir, { recursive: true, force: true })
  }
}

/** A tenant with `count` sessions, each of which has answered its status once (actors started, shards settled). */
export const createSessions = async (cluster: LocalCluster.LocalCluster, count: number) => {
  const gateway = cluster.gatewayUrl
  const tenant = await call(gateway, "POST", "/tenants", { bearer: cluster.adminToken, json: { name: "bench" } })
  const token = text(tenant.body, "token")
  const keys: Array<{ id: string; key: string }> = []
  for (let i = 0; i < count; i++) {
    const created = await call(gateway, "POST", "/sessions", {
      bearer: token,
      json: { name: `bench-${i}`, city: "jakarta" }
    })
    keys.push({ id: text(created.body, "session", "id"), key: text(created.body, "apiKey", "key") })
  }
  for (const { id, key } of keys) {
    for (let attempt = 0;; attempt++) {
      const reply = await call(gateway, "GET", `/sessions/${id}/status`, { apiKey: key })
      if (reply.status === 200) break
      if (attempt > 50) throw new Error(`session ${id} never answered: ${JSON.stringify(reply.body)}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  return keys
}
