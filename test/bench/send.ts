/**
 * Send benchmark: accepted sends per second, `POST /sessions/{id}/messages` through gateway → NATS → the owner's
 * session actor → Postgres (the durable queue), under load from autocannon; beside the same machine's raw Postgres
 * rate of single-row inserts into a table shaped like `messages` (same columns and indexes), with as many
 * concurrent clients, measured in the same run. Prints both and their ratio, and, between them, the owner's own write
 * path (Outbox.enqueue with its group commit, as many sessions at once as there are clients, each queueing its texts
 * one after another as its actor does): what Postgres takes when the texts do not come one statement each.
 *
 *   pnpm bench:send [--duration 15] [--connections 50] [--sessions 200] [--nodes 2] [--rate 2000] [--fsync]
 *                   [--steady-only] [--profile DIR]
 *
 * Then a steady --rate of sends a second (an open loop, latency from when each was due): the issue's target is
 * 2,000 accepted sends/s with p99 ≤ 50 ms. Its p99 is made by a few bad moments, so it also says when its slow
 * answers came (shapeOf). Then the same open loop against the bare pipeline (bare.ts, the least a send costs here
 * along the cluster's path), whose latency the steady phase is read against. --steady-only measures those two alone
 * (and profiles the first, with --profile): a longer --duration of them says more of the tail than the whole
 * benchmark run again.
 *
 * With --profile, the gateway and the nodes write a CPU profile of the send measurement (.cpuprofile) into DIR
 * (read them with profile-summary.ts).
 *
 * Beside the accepted sends, the CPU time each process used per send while they were measured (gateway, nodes,
 * nats-server, Postgres, this process as load generator): what a change made cheaper, and where the machine's time
 * goes.
 *
 * The sessions are not linked: their texts wait in the queue, which is what "accepted" means here (the sending
 * itself is paced per session by SESSION_SEND_INTERVAL).
 */
import { SqlClient } from "@effect/sql"
import { makeMessageId, SessionId } from "@wacluster/domain/Ids"
import { ShardNumber } from "@wacluster/domain/Shard"
import type * as LocalCluster from "@wacluster/infra/LocalCluster"
import * as Database from "@wacluster/store/Database"
import { Outbox } from "@wacluster/store/Outbox"
import * as OutboxLayer from "@wacluster/store/Outbox"
import autocannon from "autocannon"
import { Effect, Layer } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { mkdir } from "node:fs/promises"
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import {
  cpuPerRequest,
  cpuTimes,
  createSessions,
  fromAutocannon,
  fromLatencies,
  percentile,
  processCpu,
  row,
  wakeCounts,
  wakesPerRequest,
  withCluster
} from "./cluster.js"
import { jsonPost, makeClient } from "./openLoop.js"

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "15" },
    connections: { type: "string", default: "50" },
    sessions: { type: "string", default: "200" },
    nodes: { type: "string", default: "2" },
    fsync: { type: "boolean", default: false },
    rate: { type: "string", default: "2000" },
    "steady-only": { type: "boolean", default: false },
    profile: { type: "string" }
  }
})
const duration = Number(values.duration)
const connections = Number(values.connections)
const sessionCount = Number(values.sessions)
const rate = Number(values.rate)
const profileDir = values.profile === undefined ? undefined : resolve(values.profile)
if (profileDir !== undefined) await mkdir(profileDir, { recursive: true })

/** Raw single-row inserts into a copy of `messages`, `concurrency` at a time, for `seconds`. */
const postgresBaseline = (databaseUrl: string, seconds: number, concurrency: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`DROP TABLE IF EXISTS bench_messages`
    yield* sql`CREATE TABLE bench_messages (LIKE messages INCLUDING ALL)`
    const latencies: Array<number> = []
    let errors = 0
    const until = performance.now() + seconds * 1000
    const worker = Effect.gen(function*() {
      while (performance.now() < until) {
        const started = performance.now()
        const id = `msg_${randomUUID().replace(/-/g, "").slice(0, 20)}`
        const inserted = yield* sql`INSERT INTO bench_messages
            (id, session_id, direction, remote_jid, body, status, idempotency_key)
          VALUES (${id}, 'sess_bench', 'outbound', '6281234567890@s.whatsapp.net',
            ${JSON.stringify({ text: "benchmark text" })}::jsonb, 'queued', ${`gateway:${randomUUID()}`})
          RETURNING id, status, created_at`.pipe(Effect.either)
        if (inserted._tag === "Right") latencies.push(performance.now() - started)
        else errors++
      }
    })
    const began = performance.now()
    yield* Effect.all(Array.from({ length: concurrency }, () => worker), { concurrency: "unbounded" })
    const elapsed = (performance.now() - began) / 1000
    yield* sql`DROP TABLE bench_messages`
    return fromLatencies(latencies, elapsed, errors)
  }).pipe(
    Effect.provide(Database.layerFromUrl(databaseUrl, { maxConnections: concurrency, applicationName: "bench" })),
    Effect.scoped
  )

/**
 * The owner's write path alone, in this process: `concurrency` sessions each queueing texts one after another through
 * Outbox.enqueue (fenced with their shard's current epoch, as their owner writes), with the node's pool size.
 */
const outboxBaseline = (databaseUrl: string, seconds: number, sessionIds: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const outbox = yield* Outbox
    const latencies: Array<number> = []
    let errors = 0
    const until = performance.now() + seconds * 1000
    const worker = (sessionId: string) =>
      Effect.gen(function*() {
        const [owner] = yield* sql<{ shard: number; epoch: string }>`SELECT f.shard, f.epoch FROM sessions s
          JOIN shard_fences f ON f.shard = s.shard WHERE s.id = ${sessionId}`
        if (owner === undefined) return yield* Effect.dieMessage(`session ${sessionId} has no fenced shard`)
        const fence = { shard: ShardNumber.make(owner.shard), epoch: Number(owner.epoch) }
        while (performance.now() < until) {
          const started = performance.now()
          const queued = yield* outbox.enqueue(fence, {
            id: yield* makeMessageId,
            sessionId: SessionId.make(sessionId),
            remoteJid: "6281234567890@s.whatsapp.net",
            text: "benchmark text",
            idempotencyKey: `gateway:${randomUUID()}`
          }).pipe(Effect.either)
          if (queued._tag === "Right") latencies.push(performance.now() - started)
          else errors++
        }
      })
    const began = performance.now()
    yield* Effect.forEach(sessionIds, worker, { concurrency: "unbounded", discard: true })
    return fromLatencies(latencies, (performance.now() - began) / 1000, errors)
  }).pipe(
    Effect.provide(OutboxLayer.layer.pipe(
      Layer.provideMerge(Database.layerFromUrl(databaseUrl, { applicationName: "bench" }))
    )),
    Effect.scoped
  )

const sendLoad = async (gateway: string, keys: ReadonlyArray<{ id: string; key: string }>, seconds: number) => {
  const body = JSON.stringify({ to: "+62 812 3456 7890", text: "benchmark text" })
  const result = await autocannon({
    url: gateway,
    connections,
    duration: seconds,
    requests: keys.map(({ id, key }) => ({
      method: "POST" as const,
      path: `/sessions/${id}/messages`,
      headers: { "x-api-key": key, "content-type": "application/json" },
      body
    }))
  })
  return fromAutocannon(result)
}

/** The `error.code` of an error answer's body (`{ "error": { "code", "message" } }`), or what the body began with. */
const errorCode = (body: string) => {
  try {
    const parsed: unknown = JSON.parse(body)
    const error = typeof parsed === "object" && parsed !== null && "error" in parsed ? parsed.error : undefined
    const code = typeof error === "object" && error !== null && "code" in error ? error.code : undefined
    if (typeof code === "string") return code
  } catch {
    // Not JSON: its first characters say more than nothing.
  }
  return JSON.stringify(body.slice(0, 60))
}

/**
 * Where in time an open loop's slow answers fell: the slowest answer of each of the worst seconds, and the median
 * of the answers due in each tenth of a second (all seconds folded together). Work that recurs every second (a timer
 * of a second, its bursts) shows as one tenth slower than the rest; a stall (a collection, a busy moment of the
 * machine) as a bad second.
 */
const shapeOf = (timeline: ReadonlyArray<{ readonly due: number; readonly latency: number }>) => {
  const worst = new Map<number, number>()
  const tenths: Array<Array<number>> = Array.from({ length: 10 }, () => [])
  for (const { due, latency } of timeline) {
    const second = Math.floor(due / 1000)
    worst.set(second, Math.max(worst.get(second) ?? 0, latency))
    tenths[Math.floor((due % 1000) / 100)]?.push(latency)
  }
  const worstSeconds = [...worst].sort((a, b) => b[1] - a[1]).slice(0, 5)
    .map(([second, ms]) => `${ms.toFixed(0)} ms (s ${second})`)
  const medians = tenths.map((latencies) => percentile(latencies.sort((a, b) => a - b), 50).toFixed(1))
  return [
    `worst seconds: ${worstSeconds.join(", ")}; seconds over 50 ms: ${
      [...worst.values()].filter((ms) => ms > 50).length
    } of ${worst.size}`,
    `median by tenth of the second (ms): ${medians.join(" ")}`
  ]
}

/** How long the open loop runs at its rate before its requests count: the client's connections are opened then. */
const STEADY_WARM_SECONDS = 2

/**
 * A steady `rate` of sends a second for `seconds`, whatever the pace of the answers: an open loop, so a slow answer
 * does not hold back the next request and any queueing shows in the latency, which runs from when each request was
 * due (not from when a free connection let it go). The closed loop above finds the most the cluster takes; this says
 * how it answers at the target rate. It runs at the rate for STEADY_WARM_SECONDS first, uncounted: a new client
 * opens its connections in its first second while requests pile up behind the handshakes, and that second was the
 * worst of a run (250 to 1,700 requests over 50 ms in it, up to 744 ms), which says nothing of a steady rate.
 */
const steadyLoad = async (
  gateway: string,
  keys: ReadonlyArray<{ id: string; key: string }>,
  rate: number,
  seconds: number
) => {
  const body = JSON.stringify({ to: "+62 812 3456 7890", text: "benchmark text" })
  const client = makeClient(gateway)
  const host = new URL(gateway).host
  const requests = keys.map(({ id, key }) => jsonPost(host, `/sessions/${id}/messages`, { "x-api-key": key }, body))
  /** What each failed request got: its status and error code, or why it got no answer. */
  const failures = new Map<string, number>()
  const failed = (kind: string) => failures.set(kind, (failures.get(kind) ?? 0) + 1)
  const warm = Math.round(rate * STEADY_WARM_SECONDS)
  const total = warm + Math.round(rate * seconds)
  const answered: Array<Promise<void>> = []
  const timeline: Array<{ readonly due: number; readonly latency: number }> = []
  const started = performance.now()
  for (let issued = 0; issued < total;) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate))
    for (; issued < due; issued++) {
      const dueAt = started + (issued * 1000) / rate
      const counted = issued >= warm
      answered.push(
        client.send(requests[issued % requests.length] ?? Buffer.alloc(0)).then((answer) => {
          if (!counted) return
          if (answer.status !== 202) return void failed(`${answer.status} ${errorCode(answer.failure)}`)
          timeline.push({ due: dueAt - started - STEADY_WARM_SECONDS * 1000, latency: performance.now() - dueAt })
        }, (error: unknown) => {
          if (counted) failed(`no answer (${error instanceof Error ? error.message : String(error)})`)
        })
      )
    }
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  await Promise.all(answered)
  const elapsed = (performance.now() - started) / 1000 - STEADY_WARM_SECONDS
  client.close()
  const latencies = timeline.map(({ latency }) => latency)
  const errors = [...failures.values()].reduce((sum, count) => sum + count, 0)
  return {
    /** Every request sent, the warm-up's too (what CPU readings around the whole loop take in). */
    sent: total,
    figures: fromLatencies(latencies, elapsed, errors),
    shape: shapeOf(timeline),
    failures: [...failures].sort((a, b) => b[1] - a[1]).map(([kind, count]) => `${kind} ×${count}`)
  }
}

/** An open loop's report: its figures, when its slow answers came, and what its failed requests got. */
const openLoopLines = (label: string, prefix: string, loop: Awaited<ReturnType<typeof steadyLoad>>) => [
  row(label, loop.figures, "/s"),
  ...loop.shape.map((line) => `${prefix}, ${line}`),
  ...(loop.failures.length === 0 ? [] : [`${prefix}, errors: ${loop.failures.join(", ")}`])
]

/** Starts bare.ts in `role` with `args`; resolves once it says "ready", with what followed (the front's port). */
const startBare = (role: "front" | "back", args: ReadonlyArray<string>) =>
  new Promise<{ readonly child: ChildProcess; readonly said: string }>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", fileURLToPath(new URL("bare.ts", import.meta.url)), role, ...args],
      { stdio: ["ignore", "pipe", "inherit"] }
    )
    child.stdout.on("data", (chunk: Buffer) => {
      const said = /^ready ?(.*)$/m.exec(chunk.toString())
      if (said !== null) resolve({ child, said: said[1] ?? "" })
    })
    child.once("exit", (code) => reject(new Error(`bare.ts ${role} exited with ${code}`)))
  })

/**
 * The bare pipeline (bare.ts) at the steady phase's rate, with as many backs as the cluster has nodes: the least a
 * send costs on this machine along the cluster's path, beside which the cluster's steady phase is read. It uses the
 * cluster's own nats-server and Postgres (a copy of `messages`, dropped after), while the cluster idles beside it
 * (its nodes renewing their leases: a few percent of the machine, which the baseline bears).
 */
const bareSteady = async (cluster: LocalCluster.LocalCluster, keys: ReadonlyArray<{ id: string; key: string }>) => {
  const natsUrl = cluster.natsServers[0]?.url ?? ""
  const inDatabase = <A>(effect: Effect.Effect<A, unknown, SqlClient.SqlClient>) =>
    Effect.runPromise(effect.pipe(
      Effect.provide(Database.layerFromUrl(cluster.databaseUrl, { applicationName: "bench" })),
      Effect.scoped
    ))
  await inDatabase(Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.zipRight(
      sql`DROP TABLE IF EXISTS bare_messages`,
      sql`CREATE TABLE bare_messages (LIKE messages INCLUDING ALL)`
    )))
  const backs = await Promise.all(
    cluster.nodes.map((_, index) =>
      startBare("back", [natsUrl, cluster.databaseUrl, "bare_messages", String(index), String(cluster.nodes.length)])
    )
  )
  const front = await startBare("front", [natsUrl, "0"])
  const processes = [
    { name: "front", pid: front.child.pid },
    ...backs.map((back, index) => ({ name: `back-${index + 1}`, pid: back.child.pid }))
  ]
  const readings = () => {
    const ofCluster = cpuTimes(cluster)
    const times = new Map<string, number>()
    for (const { name, pid } of processes) {
      const cpu = pid === undefined ? undefined : processCpu(pid)
      if (cpu !== undefined) times.set(name, cpu.ms)
    }
    for (const name of ["nats", "postgres", "load generator"]) {
      const ms = ofCluster.get(name)
      if (ms !== undefined) times.set(name, ms)
    }
    return times
  }
  try {
    const before = readings()
    const steady = await steadyLoad(`http://127.0.0.1:${front.said}`, keys, rate, duration)
    const after = readings()
    return { steady, cpu: cpuPerRequest(before, after, steady.sent) }
  } finally {
    for (const { child } of [front, ...backs]) child.kill("SIGKILL")
    await inDatabase(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP TABLE IF EXISTS bare_messages`))
  }
}

const main = () =>
  withCluster({
    nodes: Number(values.nodes),
    logs: "quiet",
    fsync: values.fsync,
    // Sessions wait for a scan on wa-sim (showing QR codes) rather than failing to reach WhatsApp over and over.
    simulate: true,
    env: {
      LOG_LEVEL: "Warn",
      ...(profileDir === undefined ? {} : {
        NODE_OPTIONS: `--import tsx --import ${fileURLToPath(new URL("loop-probe.ts", import.meta.url))}`,
        LOOP_PROBE_PROFILE_DIR: profileDir
      })
    }
  }, async (cluster) => {
    const gateway = cluster.gatewayUrl
    const keys = await createSessions(cluster, sessionCount)
    process.stdout.write(`warming up…\n`)
    await sendLoad(gateway, keys, 3)

    // Starts (and at the end writes) each service's CPU profile, with --profile (loop-probe.ts).
    const profile = () => {
      if (profileDir === undefined) return
      for (const service of [cluster.gateway, ...cluster.nodes]) process.kill(service.pid, "SIGWINCH")
    }
    const header = `send benchmark: ${values.nodes} nodes, ${sessionCount} sessions, ${connections} concurrent, ` +
      `${duration} s each, fsync ${values.fsync ? "on" : "off"}`
    const lines = values["steady-only"] ? [header] : [header, ...await closedLoop(cluster, keys, profile)]

    process.stdout.write(`measuring a steady ${rate} sends/s for ${duration} s…\n`)
    // With --steady-only, the profile is of this phase.
    if (values["steady-only"]) profile()
    const steadyCpuBefore = cpuTimes(cluster)
    const steadyWakesBefore = wakeCounts(cluster)
    const steady = await steadyLoad(gateway, keys, rate, duration)
    const steadyCpuAfter = cpuTimes(cluster)
    const steadyWakesAfter = wakeCounts(cluster)
    if (values["steady-only"]) profile()

    process.stdout.write(`measuring the bare pipeline at ${rate} sends/s for ${duration} s…\n`)
    const bare = await bareSteady(cluster, keys)

    process.stdout.write([
      "",
      ...lines,
      ...openLoopLines(`steady ${rate} sends/s offered (open loop)`, `steady ${rate}/s`, steady),
      `steady ${rate}/s, ${cpuPerRequest(steadyCpuBefore, steadyCpuAfter, steady.sent)}`,
      `steady ${rate}/s, ${wakesPerRequest(steadyWakesBefore, steadyWakesAfter, steady.sent)}`,
      ...openLoopLines(`bare pipeline, ${rate}/s offered`, `bare ${rate}/s`, bare.steady),
      `bare ${rate}/s, ${bare.cpu}`,
      `steady ratio (cluster / bare pipeline): p50 ${(steady.figures.p50 / bare.steady.figures.p50).toFixed(2)}×, ` +
      `p99 ${(steady.figures.p99 / bare.steady.figures.p99).toFixed(2)}×`,
      ""
    ].join("\n"))
  })

/** The closed-loop phases: raw inserts, the owner's queue writes, then as many sends as the cluster takes. */
const closedLoop = async (
  cluster: LocalCluster.LocalCluster,
  keys: ReadonlyArray<{ id: string; key: string }>,
  profile: () => void
) => {
  process.stdout.write(`measuring raw Postgres inserts for ${duration} s…\n`)
  const baseline = await Effect.runPromise(postgresBaseline(cluster.databaseUrl, duration, connections))
  process.stdout.write(`measuring the owner's queue writes (Outbox.enqueue) for ${duration} s…\n`)
  const owner = await Effect.runPromise(
    outboxBaseline(cluster.databaseUrl, duration, keys.slice(0, connections).map(({ id }) => id))
  )
  process.stdout.write(`measuring POST /sessions/{id}/messages for ${duration} s…\n`)
  profile()
  const cpuBefore = cpuTimes(cluster)
  const wakesBefore = wakeCounts(cluster)
  const sends = await sendLoad(cluster.gatewayUrl, keys, duration)
  const cpuAfter = cpuTimes(cluster)
  const wakesAfter = wakeCounts(cluster)
  profile()
  return [
    row("raw Postgres single-row insert", baseline, "/s"),
    row("owner's queue writes (group commit)", owner, "/s"),
    row("accepted sends (gateway → node → PG)", sends, "/s"),
    `ratio (sends / inserts): throughput ${(sends.perSecond / baseline.perSecond).toFixed(2)}×, ` +
    `p50 latency ${(sends.p50 / baseline.p50).toFixed(2)}×, p99 latency ${(sends.p99 / baseline.p99).toFixed(2)}×`,
    `accepted sends, ${cpuPerRequest(cpuBefore, cpuAfter, sends.perSecond * duration)}`,
    `accepted sends, ${wakesPerRequest(wakesBefore, wakesAfter, sends.perSecond * duration)}`
  ]
}

process.stdout.write(`starting a cluster with ${values.nodes} nodes (fsync ${values.fsync ? "on" : "off"})…\n`)
await main()
