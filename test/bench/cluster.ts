/**
 * What the HTTP benchmarks share: a private cluster for the run, a tenant with sessions that have all answered once,
 * and the figures they print.
 */
import * as LocalCluster from "@wacluster/infra/LocalCluster"
import type autocannon from "autocannon"
import { Effect, Exit, Scope } from "effect"
import { readdirSync, readFileSync } from "node:fs"
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

/** Clock ticks a second in /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100

/**
 * User + system CPU time (ms) a process has used, what its children that ended used (once it reaped them), and its
 * parent, from /proc; undefined where it cannot be read.
 */
export const processCpu = (
  pid: number
): { readonly ms: number; readonly endedChildrenMs: number; readonly parent: number } | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the command name, which is in parentheses and may hold spaces: state, ppid, …, utime, stime,
    // cutime, cstime.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const ms = (ticks: number) => (ticks * 1000) / TICKS_PER_SECOND
    return {
      ms: ms(Number(fields[11]) + Number(fields[12])),
      endedChildrenMs: ms(Number(fields[13]) + Number(fields[14])),
      parent: Number(fields[1])
    }
  } catch {
    return undefined
  }
}

/** The gateway, each node and each nats-server, as the readings below name them. */
const services = (
  cluster: LocalCluster.LocalCluster
): ReadonlyArray<{ readonly name: string; readonly pid: number }> => [
  { name: "gateway", pid: cluster.gateway.pid },
  ...cluster.nodes.map((node) => ({ name: node.nodeId as string, pid: node.pid })),
  ...cluster.natsServers.map((server) => ({
    name: cluster.natsServers.length === 1 ? "nats" : `nats ${server.pid}`,
    pid: server.pid
  }))
]

/** The processes a Postgres server started (its backends and helpers), alive now, with their CPU time (ms). */
const childrenOf = (postmaster: number): ReadonlyArray<{ readonly pid: number; readonly ms: number }> =>
  readdirSync("/proc", { withFileTypes: true }).flatMap((entry) => {
    if (!entry.isDirectory() || !/^\d+$/.test(entry.name)) return []
    const cpu = processCpu(Number(entry.name))
    return cpu?.parent === postmaster ? [{ pid: Number(entry.name), ms: cpu.ms }] : []
  })

/**
 * The CPU time (ms) each of the cluster's processes has used so far: the gateway, each node, the nats-server,
 * Postgres (its server and every process it started, together) and this process (the load generator). Empty where
 * /proc cannot be read.
 */
export const cpuTimes = (cluster: LocalCluster.LocalCluster): Map<string, number> => {
  const times = new Map<string, number>()
  for (const { name, pid } of services(cluster)) {
    const cpu = processCpu(pid)
    if (cpu !== undefined) times.set(name, cpu.ms)
  }
  const postmaster = cluster.postgres?.pid
  if (postmaster !== undefined) {
    // A backend that ended meanwhile (a pool closing an idle connection) moved its time into the server's own
    // count of its ended children: counted there, the sum does not drop when one ends.
    const server = processCpu(postmaster)
    let total = (server?.ms ?? 0) + (server?.endedChildrenMs ?? 0)
    for (const child of childrenOf(postmaster)) total += child.ms
    times.set("postgres", total)
  }
  const usage = process.cpuUsage()
  times.set("load generator", (usage.user + usage.system) / 1000)
  return times
}

/** A process's wake-ups (voluntary context switches of all its threads) and write system calls so far. */
const processWakes = (pid: number): { readonly wakeUps: number; readonly writes: number } | undefined => {
  try {
    let wakeUps = 0
    for (const thread of readdirSync(`/proc/${pid}/task`)) {
      const status = readFileSync(`/proc/${pid}/task/${thread}/status`, "utf8")
      wakeUps += Number(/\nvoluntary_ctxt_switches:\s*(\d+)/.exec(status)?.[1] ?? 0)
    }
    const writes = Number(/\nsyscw:\s*(\d+)/.exec(`\n${readFileSync(`/proc/${pid}/io`, "utf8")}`)?.[1] ?? 0)
    return { wakeUps, writes }
  } catch {
    return undefined
  }
}

/**
 * How often each of the cluster's processes has gone to sleep and been woken (voluntary context switches, every
 * thread) and written to a socket or file (write system calls), as `cpuTimes` names them; Postgres counts its
 * backends alive now. On a virtual machine where waking an idle CPU is dear (see README), these say where the CPU
 * time of a request goes beside what the processes compute.
 */
export const wakeCounts = (cluster: LocalCluster.LocalCluster): Map<string, { wakeUps: number; writes: number }> => {
  const counts = new Map<string, { wakeUps: number; writes: number }>()
  const add = (name: string, pid: number) => {
    const wakes = processWakes(pid)
    if (wakes === undefined) return
    const sum = counts.get(name) ?? { wakeUps: 0, writes: 0 }
    counts.set(name, { wakeUps: sum.wakeUps + wakes.wakeUps, writes: sum.writes + wakes.writes })
  }
  for (const { name, pid } of services(cluster)) add(name, pid)
  const postmaster = cluster.postgres?.pid
  if (postmaster !== undefined) {
    add("postgres", postmaster)
    for (const child of childrenOf(postmaster)) add("postgres", child.pid)
  }
  add("load generator", process.pid)
  return counts
}

/** Wake-ups and writes per request between two `wakeCounts` readings, process by process. */
export const wakesPerRequest = (
  before: Map<string, { wakeUps: number; writes: number }>,
  after: Map<string, { wakeUps: number; writes: number }>,
  requests: number
) => {
  const shares = [...after].flatMap(([name, end]) => {
    const start = before.get(name)
    return start === undefined ? [] : [{
      name,
      wakeUps: (end.wakeUps - start.wakeUps) / requests,
      writes: (end.writes - start.writes) / requests
    }]
  })
  if (shares.length === 0) return "wake-ups per request: not measured (no /proc here)"
  const list = (pick: (share: (typeof shares)[number]) => number) =>
    shares.map((share) => `${share.name} ${pick(share).toFixed(2)}`).join(", ")
  return `wake-ups per request: ${list((share) => share.wakeUps)}; writes per request: ${list((share) => share.writes)}`
}

/** CPU time per request between two `cpuTimes` readings, process by process and in all (ms). */
export const cpuPerRequest = (before: Map<string, number>, after: Map<string, number>, requests: number) => {
  const shares = [...after].flatMap(([name, ms]) => {
    const start = before.get(name)
    return start === undefined ? [] : [{ name, ms: (ms - start) / requests }]
  })
  if (shares.length === 0) return "CPU per request: not measured (no /proc here)"
  const total = shares.reduce((sum, share) => sum + share.ms, 0)
  return `CPU ms per request: ${shares.map(({ ms, name }) => `${name} ${ms.toFixed(3)}`).join(", ")}; ` +
    `all ${total.toFixed(3)}`
}
