/**
 * Density benchmark: how many real WhatsApp sessions one node holds, and at what memory. N sessions are created
 * through the gateway and linked by QR with wa-sim's phone (wa-sim in its own process); the node's memory is read
 * idle, with N connected, and again after a restart that logs all N back in from Postgres. The baseline, measured
 * in the same run against the same wa-sim, is N bare Baileys sockets in a process of their own
 * (baileys-baseline.ts); WAHA's documented figure (~500 Baileys sessions in ~30 GB) is printed beside both.
 *
 *   pnpm exec tsx test/bench/density.ts [--sessions 100] [--link-concurrency 20] [--settle 15]
 *     [--baseline-sessions N] [--skip-baseline] [--skip-restart] [--timeout 20 (minutes)]
 *     [--logs quiet|inherit] [--log-level Warn] [--env NAME=value]… [--probe on|off] [--profile <dir> [--heap]]
 *     [--node-flags "<flags for the services' Node, e.g. --max-semi-space-size=64>"]
 *     [--shared-als (a what-if, see shared-als.ts)] [--data-dir <dir>]
 *
 * `--data-dir <dir>` keeps the cluster (Postgres, NATS, wa-sim's devices) in that directory instead of a temporary
 * one. A later run with the same directory skips linking: it starts the node on the sessions linked before (a cold
 * start that logs them all in from Postgres), then goes on to the restart. Linking thousands takes many minutes;
 * this is how a restart of them is measured again and again.
 *
 * `--probe on` (the default) preloads loop-probe.ts into the gateway and the node: event-loop stalls show in their
 * logs, and the node can be asked for a full garbage collection, so live memory is reported beside running memory.
 * `--profile <dir>` also writes the node's CPU profile of each phase there (idle, link, linked, restart, restarted;
 * read them with profile-summary.ts); with `--heap`, what each phase allocated too (heap-summary.ts).
 */
import { Health } from "@wacluster/domain/Api"
import * as LocalCluster from "@wacluster/infra/LocalCluster"
import { repoRoot } from "@wacluster/infra/Service"
import { Effect, Exit, Schema, Scope } from "effect"
import { spawn } from "node:child_process"
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { parseArgs } from "node:util"
import { call, type ListedSession, listSessions, text } from "../support/Gateway.js"
import { waSimControl } from "../support/WaSimControl.js"
import { processCpu } from "./cluster.js"
import { measure, type Measured, megabytes, type MemorySample } from "./memory.js"

const { values } = parseArgs({
  options: {
    sessions: { type: "string", default: "100" },
    "link-concurrency": { type: "string", default: "20" },
    settle: { type: "string", default: "15" },
    "baseline-sessions": { type: "string" },
    "skip-baseline": { type: "boolean", default: false },
    "skip-restart": { type: "boolean", default: false },
    timeout: { type: "string", default: "20" },
    logs: { type: "string", default: "quiet" },
    "log-level": { type: "string", default: "Warn" },
    env: { type: "string", multiple: true, default: [] },
    probe: { type: "string", default: "on" },
    profile: { type: "string" },
    "node-flags": { type: "string", default: "" },
    heap: { type: "boolean", default: false },
    "shared-als": { type: "boolean", default: false },
    "data-dir": { type: "string" }
  }
})
const sessionCount = Number(values.sessions)
const linkConcurrency = Number(values["link-concurrency"])
const settleSeconds = Number(values.settle)
const baselineCount = Number(values["baseline-sessions"] ?? values.sessions)
const timeoutMs = Number(values.timeout) * 60_000
const logs = values.logs === "inherit" ? "inherit" : "quiet"
const probe = values.probe !== "off" || values.profile !== undefined
const profileDir = values.profile === undefined ? undefined : resolve(values.profile)
if (profileDir !== undefined) await mkdir(profileDir, { recursive: true })
const sharedAls = values["shared-als"]
const sharedAlsImport = ["--import", join(repoRoot, "test/bench/shared-als.ts")]

/** WAHA documents about 500 Baileys sessions per server at about 30 GB. */
const WAHA_MB_PER_SESSION = 60
/** Our settings, given to the gateway and the node; printed with the results. */
const SETTINGS: Record<string, string> = {
  node: process.version,
  ...(sharedAls ? { "what-if": "shared AsyncLocalStorage (shared-als.ts) in the node and the baseline" } : {}),
  ...(values["node-flags"] === "" ? {} : { "node flags": values["node-flags"] }),
  LOG_LEVEL: values["log-level"],
  ...Object.fromEntries(values.env.map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)]))
}
const nodeOptions = [
  ...values["node-flags"].split(" ").filter((flag) => flag !== ""),
  ...(probe ? ["--expose-gc", "--import", "tsx", "--import", join(repoRoot, "test/bench/loop-probe.ts")] : []),
  ...(sharedAls ? [...(probe ? [] : ["--import", "tsx"]), ...sharedAlsImport] : [])
]
const { node: _node, "what-if": _whatIf, "node flags": _nodeFlags, ...serviceSettings } = SETTINGS
const ENV: Record<string, string> = {
  ...serviceSettings,
  ...(nodeOptions.length > 0 ? { NODE_OPTIONS: nodeOptions.join(" ") } : {}),
  ...(profileDir === undefined ? {} : { LOOP_PROBE_PROFILE_DIR: profileDir }),
  ...(profileDir !== undefined && values.heap ? { LOOP_PROBE_HEAP: "on" } : {})
}

/** The last log lines each service kept (with quiet logs, they are shown only when something fails). */
const printRecentLogs = async (cluster: LocalCluster.LocalCluster | undefined) => {
  const services = cluster === undefined ? [] : [
    cluster.gateway.service,
    ...cluster.nodes.map((node) => node.service),
    ...(cluster.waSim ? [cluster.waSim.service] : [])
  ]
  for (const service of services) {
    const tail = await Effect.runPromise(service.recentLogs)
    process.stdout.write(`--- last log lines of ${service.name} ---\n${tail.join("\n")}\n`)
  }
}

/** Starts or ends (and writes) the node's CPU profile of a phase, with `--profile`. */
const profilePhase = (pid: number) => {
  if (profileDir !== undefined) process.kill(pid, "SIGWINCH")
}

/** Ctrl-C (or SIGTERM) aborts the phase under way; `main` then stops everything it started. */
const abort = new AbortController()
const checkAbort = () => {
  if (abort.signal.aborted) throw new Error("interrupted")
}
const sleep = async (ms: number) => {
  checkAbort()
  await new Promise((resolve) => setTimeout(resolve, ms))
  checkAbort()
}
const log = (line: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`)
const phoneOf = (index: number) => `62811${String(index).padStart(7, "0")}`
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`
const mb = (bytes: number) => `${megabytes(bytes).toFixed(1)} MB`
const perMb = (bytes: number) => `${megabytes(bytes).toFixed(2)} MB`

const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN
}
const spread = (values: ReadonlyArray<number>) =>
  `p50 ${(percentile(values, 50) / 1000).toFixed(2)} s, p95 ${(percentile(values, 95) / 1000).toFixed(2)} s, max ${
    (percentile(values, 100) / 1000).toFixed(2)
  } s`

const decodeHealth = Schema.decodeUnknownSync(Health)

const nodeHealth = async (node: LocalCluster.ClusterNode) => {
  const response = await fetch(`${node.httpUrl}/healthz`)
  return decodeHealth(await response.json())
}

/** The node's memory as its /healthz reports it, running and (with the probe) after full collections. */
const nodeMemory = (node: LocalCluster.ClusterNode): Promise<Measured> =>
  measure(
    async () => {
      const { memory } = await nodeHealth(node)
      if (memory === undefined) throw new Error(`${node.nodeId}'s /healthz does not report its memory`)
      return memory
    },
    () => (probe ? process.kill(node.pid, "SIGUSR2") : undefined)
  )

/** CPU seconds (user + system) a process has used, from /proc. */
const cpuSeconds = (pid: number) => {
  const cpu = processCpu(pid)
  if (cpu === undefined) throw new Error(`no CPU time for process ${pid} (no /proc here?)`)
  return cpu.ms / 1000
}

/** Waits `ms`, and says how busy the process was meanwhile (percent of one core). */
const settle = async (pid: number, ms: number) => {
  const before = cpuSeconds(pid)
  await sleep(ms)
  return (cpuSeconds(pid) - before) / (ms / 1000) * 100
}

const histogram = (sessions: ReadonlyArray<ListedSession>) => {
  const counts = new Map<string, number>()
  for (const { reason, status } of sessions) {
    const key = reason === null ? status : `${status}/${reason}`
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  return Array.from(counts, ([key, count]) => `${key} ${count}`).join(", ")
}

/**
 * Polls the tenant's list until `expected` sessions are connected with a connection time at or after `sinceWall`
 * (a status left over from before a restart does not count). Resolves with the latest connection time, which is
 * when the last one connected.
 */
const awaitConnected = async (
  gateway: string,
  token: string,
  expected: number,
  sinceWall: number,
  what: string,
  progress?: () => string
) => {
  const deadline = Date.now() + timeoutMs
  let lastReport = Date.now()
  while (true) {
    const sessions = await listSessions(gateway, token)
    const done = sessions.filter((s) =>
      s.status === "connected" && s.connectedAt !== null && s.connectedAt >= sinceWall
    )
    if (done.length >= expected) return Math.max(...done.map((s) => s.connectedAt ?? 0))
    if (Date.now() > deadline) {
      throw new Error(
        `${what}: ${done.length}/${expected} connected after ${values.timeout} min (${histogram(sessions)})`
      )
    }
    if (Date.now() - lastReport >= 10_000) {
      lastReport = Date.now()
      log(`${what}: ${done.length}/${expected} connected${progress ? `, ${progress()}` : ""} (${histogram(sessions)})`)
    }
    await sleep(1000)
  }
}

interface BaselineResult {
  readonly idle: Measured
  readonly after: Measured
  readonly connected: number
  readonly failures: number
  readonly unexpectedCloses: number
  readonly linkSeconds: number
  readonly settleCpuPercent: number
}

/** baileys-baseline.ts in its own process, against the same wa-sim. */
const runBaseline = (waSim: LocalCluster.ClusterWaSim, count: number): Promise<BaselineResult> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [
      "--expose-gc",
      "--import",
      "tsx",
      ...(sharedAls ? sharedAlsImport : []),
      join(repoRoot, "test/bench/baileys-baseline.ts"),
      "--url",
      waSim.url,
      "--control-url",
      waSim.controlUrl,
      "--root-key",
      waSim.rootPublicKey,
      "--sessions",
      String(count),
      "--concurrency",
      String(linkConcurrency),
      "--settle",
      String(settleSeconds)
    ], { cwd: repoRoot, stdio: ["ignore", "pipe", "inherit"] })
    let output = ""
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()))
    // Ctrl-C or a failure here must not leave it running.
    const kill = () => child.kill("SIGKILL")
    process.once("exit", kill)
    child.once("error", reject)
    child.once("exit", (code) => {
      process.off("exit", kill)
      const line = output.trim().split("\n").pop() ?? ""
      try {
        resolve(JSON.parse(line) as BaselineResult)
      } catch {
        reject(new Error(`the baseline exited with ${code} without a result: ${output}`))
      }
    })
  })

/** `name: RSS a → b (+x/session), heap …` for one way of reading memory. */
const memoryLine = (
  name: string,
  idle: MemorySample,
  after: MemorySample,
  count: number,
  unit: string
) => {
  const per = (figure: keyof MemorySample) => (after[figure] - idle[figure]) / Math.max(1, count)
  return `${name} RSS ${mb(idle.rssBytes)} → ${mb(after.rssBytes)} (+${perMb(per("rssBytes"))}/${unit}), heap ${
    mb(idle.heapUsedBytes)
  } → ${mb(after.heapUsedBytes)} (+${perMb(per("heapUsedBytes"))}/${unit}), external +${
    perMb(per("externalBytes"))
  }/${unit}`
}

const perUnit = (idle: MemorySample, after: MemorySample, count: number, figure: keyof MemorySample) =>
  (after[figure] - idle[figure]) / Math.max(1, count)

/** What a kept data directory (`--data-dir`) remembers of the sessions linked in it. */
const Sample = Schema.Struct({ rssBytes: Schema.Number, heapUsedBytes: Schema.Number, externalBytes: Schema.Number })
const LinkedState = Schema.parseJson(Schema.Struct({
  token: Schema.String,
  sessions: Schema.Number,
  /** The idle node's figures from the run that linked them. */
  idle: Schema.Struct({ running: Sample, collected: Sample }),
  idleCpu: Schema.Number
}))

const main = async () => {
  const scope = Effect.runSync(Scope.make())
  const keptDir = values["data-dir"] === undefined ? undefined : resolve(values["data-dir"])
  const dataDir = keptDir ?? await mkdtemp(join(tmpdir(), "wacluster-density-"))
  await mkdir(dataDir, { recursive: true })
  await chmod(dataDir, 0o755)
  const linkedFile = join(dataDir, "density.json")
  const linkedBefore = keptDir === undefined
    ? undefined
    : await readFile(linkedFile, "utf8").then(Schema.decodeUnknownSync(LinkedState), () => undefined)
  const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Scope.extend(effect, scope))
  const stop = async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    if (keptDir === undefined) await rm(dataDir, { recursive: true, force: true })
  }
  const interrupted = () => {
    log("interrupted: stopping everything")
    abort.abort()
  }
  process.once("SIGINT", interrupted)
  process.once("SIGTERM", interrupted)
  const began = performance.now()
  const lines: Array<string> = []
  let started: LocalCluster.LocalCluster | undefined
  try {
    log(
      `starting a cluster: 1 node, wa-sim, private Postgres and nats-server (settings ${JSON.stringify(SETTINGS)})${
        linkedBefore === undefined ? "" : `, ${linkedBefore.sessions} sessions linked in ${dataDir} before`
      }`
    )
    // With sessions linked before, the node starts only once the rest is up: its start is the cold start measured.
    const cluster = await run(
      LocalCluster.start({
        dataDir,
        nodes: linkedBefore === undefined ? 1 : 0,
        logs,
        fsync: false,
        simulate: true,
        env: ENV
      })
    )
    started = cluster
    const gateway = cluster.gatewayUrl
    const waSim = cluster.waSim
    if (waSim === undefined) throw new Error("the cluster runs without wa-sim")
    const sim = waSimControl(waSim.controlUrl)
    const firstNode = () => {
      const node = cluster.nodes[0]
      if (node === undefined) throw new Error("no node is running")
      return node
    }

    const measureIdle = async () => {
      profilePhase(firstNode().pid)
      const cpu = await settle(firstNode().pid, 5000)
      profilePhase(firstNode().pid)
      return { idleCpu: cpu, idle: await nodeMemory(firstNode()) }
    }
    const { idle, idleCpu } = linkedBefore ?? await measureIdle()
    log(
      `node idle (${idleCpu.toFixed(0)}% CPU): RSS ${mb(idle.running.rssBytes)}, heap ${
        mb(idle.running.heapUsedBytes)
      }; after full GC RSS ${mb(idle.collected.rssBytes)}, heap ${mb(idle.collected.heapUsedBytes)}`
    )

    const linkAll = async () => {
      const tenant = await call(gateway, "POST", "/tenants", { bearer: cluster.adminToken, json: { name: "density" } })
      const token = text(tenant.body, "token")

      // Link: create, wait for its QR code, scan it with a phone of its own; `linkConcurrency` at a time.
      let next = 0
      let created = 0
      let scanned = 0
      const failures: Array<string> = []
      const phases = { create: [] as Array<number>, qr: [] as Array<number>, scan: [] as Array<number> }
      const linkOne = async (index: number) => {
        const createStart = performance.now()
        const reply = await call(gateway, "POST", "/sessions", {
          bearer: token,
          json: { name: `density-${index}`, city: "jakarta" }
        })
        if (reply.status !== 201) throw new Error(`create: ${reply.status} ${JSON.stringify(reply.body)}`)
        created++
        phases.create.push(performance.now() - createStart)
        const id = text(reply.body, "session", "id")
        const key = text(reply.body, "apiKey", "key")
        let lastError = ""
        // A code can rotate between reading and scanning it: read the current one again and retry.
        for (let attempt = 0; attempt < 3; attempt++) {
          const deadline = Date.now() + 60_000
          const qrStart = performance.now()
          let qr: string | undefined
          while (qr === undefined) {
            const answer = await call(gateway, "GET", `/sessions/${id}/qr?format=raw`, { apiKey: key })
            if (answer.status === 200) qr = text(answer.body, "qr")
            else if (Date.now() > deadline) {
              throw new Error(`${id}: no QR code within 60 s; last ${answer.status} ${JSON.stringify(answer.body)}`)
            } else await sleep(100)
          }
          phases.qr.push(performance.now() - qrStart)
          const scanStart = performance.now()
          try {
            await sim.scan(qr, phoneOf(index))
            scanned++
            phases.scan.push(performance.now() - scanStart)
            return
          } catch (error) {
            lastError = String(error)
          }
        }
        throw new Error(`${id}: scan failed 3 times; last ${lastError}`)
      }
      log(`linking ${sessionCount} sessions, ${linkConcurrency} at a time…`)
      const linkStartWall = Date.now()
      const linkStart = performance.now()
      const linkCpuBefore = cpuSeconds(firstNode().pid)
      profilePhase(firstNode().pid)
      const linking = Promise.all(Array.from({ length: Math.min(linkConcurrency, sessionCount) }, async () => {
        while (next < sessionCount && !abort.signal.aborted) {
          const index = next++
          try {
            await linkOne(index)
          } catch (error) {
            failures.push(String(error))
            if (failures.length <= 5) log(`link ${index} failed: ${String(error)}`)
            // With quiet logs, what the services said just before the first failure is the evidence.
            if (failures.length === 1 && logs === "quiet") await printRecentLogs(started)
          }
        }
      }))
      const linkProgress = () => `${created} created, ${scanned} scanned, ${failures.length} failed`
      const ticker = setInterval(() => log(`linking: ${linkProgress()}`), 10_000)
      await linking.finally(() => clearInterval(ticker))
      checkAbort()
      log(`all ${sessionCount} QR codes scanned in ${seconds(performance.now() - linkStart)}`)
      const connectedN = sessionCount - failures.length
      const lastLinked = await awaitConnected(gateway, token, connectedN, linkStartWall, "linking", linkProgress)
      const linkMs = lastLinked - linkStartWall
      const linkCpu = cpuSeconds(firstNode().pid) - linkCpuBefore
      profilePhase(firstNode().pid)
      const phaseLine = `create ${spread(phases.create)}; QR shown ${spread(phases.qr)}; scan ${spread(phases.scan)}`
      log(`per link: ${phaseLine}`)
      log(
        `${connectedN} connected: the last at ${seconds(linkMs)} (seen at ${
          seconds(performance.now() - linkStart)
        }); the node used ${linkCpu.toFixed(0)} CPU s; settling ${settleSeconds} s`
      )
      await writeFile(
        linkedFile,
        Schema.encodeSync(LinkedState)({ token, sessions: connectedN, idle, idleCpu })
      )
      return { token, connectedN, linkMs, linkCpu, phaseLine, failures }
    }
    /** With sessions linked before: starts the node on them and waits until all are connected again. */
    const coldStart = async (before: typeof LinkedState.Type) => {
      const startWall = Date.now()
      await Effect.runPromise(cluster.addNode("node-1"))
      const cpuBefore = cpuSeconds(firstNode().pid)
      profilePhase(firstNode().pid)
      log(`node-1 started on ${before.sessions} linked sessions; waiting for all to connect…`)
      const last = await awaitConnected(gateway, before.token, before.sessions, startWall, "cold start")
      const linkCpu = cpuSeconds(firstNode().pid) - cpuBefore
      profilePhase(firstNode().pid)
      const linkMs = last - startWall
      log(
        `${before.sessions} connected: the last at ${
          seconds(linkMs)
        } after the node started; settling ${settleSeconds} s`
      )
      return {
        token: before.token,
        connectedN: before.sessions,
        linkMs,
        linkCpu,
        phaseLine: `none: a cold start on sessions linked in ${dataDir} before`,
        failures: [] as Array<string>
      }
    }
    const { connectedN, failures, linkCpu, linkMs, phaseLine, token } = linkedBefore === undefined
      ? await linkAll()
      : await coldStart(linkedBefore)
    profilePhase(firstNode().pid)
    const linkedCpu = await settle(firstNode().pid, settleSeconds * 1000)
    profilePhase(firstNode().pid)
    const linked = await nodeMemory(firstNode())
    const linkedHealth = await nodeHealth(firstNode())
    const statsAfterLink = await sim.stats()
    log(
      `node with ${connectedN} connected (${linkedHealth.sessions ?? "?"} actors, ${
        linkedCpu.toFixed(0)
      }% CPU while settling): RSS ${mb(linked.running.rssBytes)}, heap ${
        mb(linked.running.heapUsedBytes)
      }; after full GC RSS ${mb(linked.collected.rssBytes)}, heap ${mb(linked.collected.heapUsedBytes)}; wa-sim ${
        JSON.stringify(statsAfterLink)
      }`
    )

    let restart:
      | { stopMs: number; healthyMs: number; reconnectMs: number; cpu: number; memory: Measured }
      | undefined
    if (!values["skip-restart"]) {
      log("restarting node-1 (SIGTERM, then start again under the same id)…")
      const stopStart = performance.now()
      await Effect.runPromise(cluster.stopNode("node-1"))
      const stopMs = performance.now() - stopStart
      log(`node-1 stopped in ${seconds(stopMs)}; wa-sim: ${JSON.stringify(await sim.stats())}`)
      const startWall = Date.now()
      const startAt = performance.now()
      await Effect.runPromise(cluster.addNode("node-1"))
      const healthyMs = performance.now() - startAt
      profilePhase(firstNode().pid)
      log(`node-1 healthy again in ${seconds(healthyMs)}`)
      const lastReconnected = await awaitConnected(gateway, token, connectedN, startWall, "restart")
      const reconnectMs = lastReconnected - startWall
      profilePhase(firstNode().pid)
      log(
        `all ${connectedN} connected again: the last at ${seconds(reconnectMs)} after the start (seen at ${
          seconds(performance.now() - startAt)
        }); settling ${settleSeconds} s`
      )
      profilePhase(firstNode().pid)
      const cpu = await settle(firstNode().pid, settleSeconds * 1000)
      profilePhase(firstNode().pid)
      const memory = await nodeMemory(firstNode())
      log(
        `restarted node with ${connectedN} connected (${cpu.toFixed(0)}% CPU while settling): RSS ${
          mb(memory.running.rssBytes)
        }, heap ${mb(memory.running.heapUsedBytes)}; after full GC RSS ${mb(memory.collected.rssBytes)}, heap ${
          mb(memory.collected.heapUsedBytes)
        }`
      )
      restart = { stopMs, healthyMs, reconnectMs, cpu, memory }
    }
    const stats = await sim.stats()
    log(`wa-sim: ${JSON.stringify(stats)}`)

    let baseline: BaselineResult | undefined
    if (!values["skip-baseline"]) {
      // The node's sockets would compete for the two cores with the baseline's.
      await Effect.runPromise(cluster.stopNode("node-1"))
      log(`baseline: ${baselineCount} bare Baileys sockets in their own process, same wa-sim…`)
      baseline = await runBaseline(waSim, baselineCount)
      log(`baseline: ${baseline.connected} connected in ${baseline.linkSeconds.toFixed(1)} s`)
    }
    const finalStats = await sim.stats()

    // The cleanest per-session figure: a fresh process holding N sessions; the linked one carries linking's garbage.
    const held = restart?.memory ?? linked
    const heldName = restart === undefined ? "after linking" : "after the restart"
    const ours = {
      rss: perUnit(idle.running, held.running, connectedN, "rssBytes"),
      heap: perUnit(idle.running, held.running, connectedN, "heapUsedBytes"),
      liveRss: perUnit(idle.collected, held.collected, connectedN, "rssBytes"),
      liveHeap: perUnit(idle.collected, held.collected, connectedN, "heapUsedBytes")
    }
    const bare = baseline === undefined ? undefined : {
      rss: perUnit(baseline.idle.running, baseline.after.running, baseline.connected, "rssBytes"),
      heap: perUnit(baseline.idle.running, baseline.after.running, baseline.connected, "heapUsedBytes"),
      liveRss: perUnit(baseline.idle.collected, baseline.after.collected, baseline.connected, "rssBytes"),
      liveHeap: perUnit(baseline.idle.collected, baseline.after.collected, baseline.connected, "heapUsedBytes")
    }
    const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`
    const gc = probe ? "" : " (no probe: 'after full GC' = not collected)"
    lines.push(
      "",
      `density N=${sessionCount}: 1 node, wa-sim in its own process, link concurrency ${linkConcurrency}, settings ${
        JSON.stringify(SETTINGS)
      }; memory read after ${settleSeconds} s settling, lowest of 5 readings 1 s apart (running) and of 3 readings` +
        ` each after a forced full GC (live)${gc}; whole run ${seconds(performance.now() - began)}`,
      `  link:    ${connectedN}/${sessionCount} connected, the last ${seconds(linkMs)} after the first create` +
        ` (${failures.length} link failures); node CPU ${linkCpu.toFixed(0)} s while linking, ${
          linkedCpu.toFixed(0)
        }% of a core while settling (idle ${idleCpu.toFixed(0)}%)`,
      `           per link: ${phaseLine}`,
      memoryLine("           running:", idle.running, linked.running, connectedN, "session"),
      memoryLine("           live:   ", idle.collected, linked.collected, connectedN, "session"),
      ...(restart === undefined ? [] : [
        `  restart: stop ${seconds(restart.stopMs)}, healthy ${seconds(restart.healthyMs)}; all ${connectedN} ` +
        `connected again ${seconds(restart.reconnectMs)} after the new process started (from Postgres, no QR); ${
          restart.cpu.toFixed(0)
        }% of a core while settling`,
        memoryLine("           running:", idle.running, restart.memory.running, connectedN, "session"),
        memoryLine("           live:   ", idle.collected, restart.memory.collected, connectedN, "session")
      ]),
      ...(baseline === undefined ? [] : [
        `  bare Baileys: ${baseline.connected}/${baselineCount} sockets in their own process, same wa-sim, linked in ${
          baseline.linkSeconds.toFixed(1)
        } s (${baseline.failures} failures, ${baseline.unexpectedCloses} drops); ${
          baseline.settleCpuPercent.toFixed(0)
        }% of a core while settling`,
        memoryLine("           running:", baseline.idle.running, baseline.after.running, baseline.connected, "socket"),
        memoryLine(
          "           live:   ",
          baseline.idle.collected,
          baseline.after.collected,
          baseline.connected,
          "socket"
        )
      ]),
      `  wa-sim: overlaps ${stats.overlaps} with the node, ${finalStats.overlaps} at the end; ${stats.devices} devices`,
      `density N=${sessionCount}: connected in ${seconds(linkMs)} (link)${
        restart === undefined ? "" : ` / ${seconds(restart.reconnectMs)} (restart)`
      }; node ${heldName} RSS +${mb(held.running.rssBytes - idle.running.rssBytes)} (${
        perMb(ours.rss)
      }/session), heap +${mb(held.running.heapUsedBytes - idle.running.heapUsedBytes)} (${
        perMb(ours.heap)
      }/session), live heap ${perMb(ours.liveHeap)}/session${
        bare === undefined
          ? ""
          : `; bare Baileys RSS ${perMb(bare.rss)}/socket, heap ${perMb(bare.heap)}, live heap ${
            perMb(bare.liveHeap)
          } (ratios RSS ${ratio(ours.rss, bare.rss)}, heap ${ratio(ours.heap, bare.heap)}, live heap ${
            ratio(ours.liveHeap, bare.liveHeap)
          })`
      }; WAHA ${WAHA_MB_PER_SESSION} MB/session (ratio RSS ${
        (megabytes(ours.rss) / WAHA_MB_PER_SESSION).toFixed(3)
      }x); overlaps ${finalStats.overlaps}`,
      ""
    )
    if (failures.length > 0) lines.push(`link failures (first 5):`, ...failures.slice(0, 5), "")
  } catch (error) {
    if (abort.signal.aborted) return
    // With quiet logs, the last lines of each service are the evidence of what broke.
    await printRecentLogs(started)
    throw error
  } finally {
    process.off("SIGINT", interrupted)
    process.off("SIGTERM", interrupted)
    await stop()
  }
  process.stdout.write(lines.join("\n"))
}

await main()
