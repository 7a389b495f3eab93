/**
 * Failover benchmark: N linked sessions on 3 nodes; SIGKILL the node holding the most and measure, per affected
 * session, the time from the kill until it is connected again on a survivor (p50, p99, max). The baseline, in the
 * same run on the same sessions, is a plain reconnect: wa-sim drops the same sessions' sockets while their node is
 * alive (backoff and login only, no ownership change). Then a fourth node joins: the time until the rebalance
 * settles (every shard at its desired owner, every session connected) and how many sessions moved. wa-sim's
 * overlap count (invariant 1) is reported after every phase.
 *
 *   pnpm bench:failover [--sessions 1000] [--link-concurrency 20] [--timeout 30 (minutes)] [--logs FILE]
 *     [--env NAME=value]…
 */
import { shardOf } from "@wacluster/domain/Shard"
import * as LocalCluster from "@wacluster/infra/LocalCluster"
import { Effect, Exit, Scope } from "effect"
import { createWriteStream } from "node:fs"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { call, field, listSessions } from "../support/Gateway.js"
import { sessionsOf, sleep } from "../support/Sessions.js"
import { waSimControl } from "../support/WaSimControl.js"

const { values } = parseArgs({
  options: {
    sessions: { type: "string", default: "1000" },
    "link-concurrency": { type: "string", default: "20" },
    timeout: { type: "string", default: "30" },
    logs: { type: "string" },
    env: { type: "string", multiple: true, default: [] }
  }
})
const sessionCount = Number(values.sessions)
const timeoutMs = Number(values.timeout) * 60_000
const logFile = values.logs ?? join(tmpdir(), `wacluster-failover-${Date.now()}.log`)
const extraEnv = Object.fromEntries(
  values.env.map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)])
)
const SHARDS = 256

const log = (line: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`)
const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN
}
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`
const spread = (values: ReadonlyArray<number>) =>
  `p50 ${s(percentile(values, 50))}, p99 ${s(percentile(values, 99))}, max ${s(percentile(values, 100))}`

/** Per session of `ids`: ms from `since` until it was connected again (a connection made after `since`). */
const awaitReconnected = async (
  gateway: string,
  token: string,
  ids: ReadonlySet<string>,
  since: number,
  what: string
) => {
  const deadline = Date.now() + timeoutMs
  while (true) {
    const listed = (await listSessions(gateway, token)).filter((session) => ids.has(session.id))
    const back = listed.filter((x) => x.status === "connected" && x.connectedAt !== null && x.connectedAt >= since)
    if (back.length === ids.size) return back.map((x) => (x.connectedAt ?? since) - since)
    if (Date.now() > deadline) throw new Error(`${what}: ${back.length}/${ids.size} reconnected in time`)
    await sleep(250)
  }
}

interface Overview {
  readonly nodes: ReadonlyArray<{ nodeId: string; shards: number; sessions: number }>
  readonly shards: ReadonlyArray<{ shard: number; owner: string | null }>
  readonly moves: ReadonlyArray<unknown>
}

const main = async () => {
  const scope = Effect.runSync(Scope.make())
  const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Scope.extend(effect, scope))
  const logs = createWriteStream(logFile, { flags: "a" })
  try {
    const dataDir = await mkdtemp(join(tmpdir(), "wacluster-failover-"))
    await chmod(dataDir, 0o755)
    await run(Effect.addFinalizer(() => Effect.promise(() => rm(dataDir, { recursive: true, force: true }))))
    log(`starting 3 nodes, a gateway, NATS, Postgres and wa-sim (service logs in ${logFile})`)
    const cluster = await run(LocalCluster.start({
      dataDir,
      nodes: 3,
      simulate: true,
      fsync: false,
      logs: (line) => logs.write(`${line}\n`),
      env: { LOG_LEVEL: "Warn", ...extraEnv },
      startTimeout: "60 seconds"
    }))
    if (cluster.waSim === undefined) throw new Error("no wa-sim")
    const sim = waSimControl(cluster.waSim.controlUrl)
    const gateway = cluster.gatewayUrl
    const admin = cluster.adminToken
    const overview = async () => (await call(gateway, "GET", "/admin/cluster", { bearer: admin })).body as Overview
    const tenant = await call(gateway, "POST", "/tenants", { bearer: admin, json: { name: "failover" } })
    const token = String(field(tenant.body, "token"))
    const sessions = sessionsOf(gateway, token, sim)

    const linkStarted = Date.now()
    log(`linking ${sessionCount} sessions by QR…`)
    const linked = await sessions.linkMany(sessionCount, {
      prefix: "fo",
      firstPhone: 4917000000000,
      concurrency: Number(values["link-concurrency"])
    })
    log(`${linked.length} sessions linked in ${s(Date.now() - linkStarted)}`)
    const jidOf = new Map(linked.map((session) => [session.id as string, session.jid]))

    /** The cluster once nothing moves and every session is connected (with `member`, once that node is seen). */
    const settledView = async (what: string, member?: string) => {
      const deadline = Date.now() + timeoutMs
      while (true) {
        const view = await overview()
        const sessionsReported = view.nodes.reduce((sum, node) => sum + node.sessions, 0)
        const notConnected = (await listSessions(gateway, token)).filter((x) => x.status !== "connected").length
        // A node that just started may not be in the view yet: without it, nothing would be moving yet either.
        const seen = member === undefined || view.nodes.some((node) => node.nodeId === member)
        if (seen && view.moves.length === 0 && sessionsReported === sessionCount && notConnected === 0) return view
        if (Date.now() > deadline) throw new Error(`${what}: never settled`)
        await sleep(500)
      }
    }
    const ownersOf = (view: Overview) => new Map(view.shards.map((x) => [x.shard, x.owner]))
    const ownerOfSession = (owners: ReadonlyMap<number, string | null>, id: string) => owners.get(shardOf(id, SHARDS))

    const before = await settledView("before the kill")
    const victim = [...before.nodes].sort((a, b) => b.sessions - a.sessions)[0]
    if (victim === undefined) throw new Error("no node")
    const ownersBefore = ownersOf(before)
    const affected = new Set(
      linked.filter((x) => ownerOfSession(ownersBefore, x.id) === victim.nodeId).map((x) => x.id)
    )
    log(`nodes: ${before.nodes.map((n) => `${n.nodeId} ${n.sessions} sessions/${n.shards} shards`).join(", ")}`)

    // Baseline: the same sessions' sockets dropped while their node lives (reconnect only).
    const dropAt = Date.now()
    await Promise.all([...affected].map((id) => sim.drop(jidOf.get(id) ?? "")))
    const baseline = await awaitReconnected(gateway, token, affected, dropAt, "after the drop")
    log(`baseline, ${affected.size} sockets dropped on a live node: reconnected ${spread(baseline)}`)
    await settledView("after the drop")

    // Failover: SIGKILL the node.
    const killAt = Date.now()
    await Effect.runPromise(cluster.stopNode(victim.nodeId, "SIGKILL"))
    // Beside the sessions, when each of the victim's shards got a new owner: detection and acquisition, before
    // any session of it can log in.
    const victimShards = [...ownersBefore].filter(([, owner]) => owner === victim.nodeId).map(([shard]) => shard)
    const takenAt = new Map<number, number>()
    const watchTakeover = (async () => {
      while (takenAt.size < victimShards.length && Date.now() < killAt + timeoutMs) {
        const owners = ownersOf(await overview())
        for (const shard of victimShards) {
          const owner = owners.get(shard)
          if (!takenAt.has(shard) && owner != null && owner !== victim.nodeId) takenAt.set(shard, Date.now() - killAt)
        }
        await sleep(100)
      }
    })()
    const failover = await awaitReconnected(gateway, token, affected, killAt, "after the kill")
    await watchTakeover
    const takeover = [...takenAt.values()]
    const afterKill = await settledView("after the kill")
    const overlapsAfterKill = (await sim.stats()).overlaps
    log(`failover, SIGKILL ${victim.nodeId} with ${affected.size} sessions: reconnected ${spread(failover)}`)
    log(
      `  its ${victimShards.length} shards got a new owner: first ${s(Math.min(...takeover))}, last ${
        s(Math.max(...takeover))
      } after the kill`
    )

    // Rebalance: a fourth node joins.
    const ownersBeforeJoin = ownersOf(afterKill)
    const joinAt = Date.now()
    const joined = await Effect.runPromise(cluster.addNode())
    const afterJoin = await settledView("after the join", joined.nodeId)
    const settledIn = Date.now() - joinAt
    const ownersAfterJoin = ownersOf(afterJoin)
    const moved = linked.filter((x) => ownerOfSession(ownersBeforeJoin, x.id) !== ownerOfSession(ownersAfterJoin, x.id))
    const overlaps = (await sim.stats()).overlaps

    const ratio = (a: number, b: number) => (a / b).toFixed(2)
    console.log("")
    console.log(
      `failover benchmark: ${sessionCount} sessions, 3 nodes, ${SHARDS} shards, defaults ` +
        `(LEASE_TTL 6 s, NODE_TTL 5 s, HEARTBEAT 1 s, SESSION_CONNECT_CONCURRENCY 16)${
          Object.keys(extraEnv).length > 0 ? ` with ${JSON.stringify(extraEnv)}` : ""
        }`
    )
    console.log(`  baseline (drop, node alive), ${affected.size} sessions: ${spread(baseline)}`)
    console.log(`  failover (SIGKILL ${victim.nodeId}), ${affected.size} sessions: ${spread(failover)}`)
    console.log(
      `    of which detection and takeover: its ${victimShards.length} shards had a new owner ${
        s(Math.min(...takeover))
      } (first) to ${s(Math.max(...takeover))} (last) after the kill`
    )
    console.log(
      `  ratio failover/baseline: p50 ${ratio(percentile(failover, 50), percentile(baseline, 50))}×, p99 ${
        ratio(percentile(failover, 99), percentile(baseline, 99))
      }×; overlaps after the kill: ${overlapsAfterKill}`
    )
    console.log(
      `  rebalance (${joined.nodeId} joins): settled in ${s(settledIn)}, ${moved.length} sessions moved ` +
        `(${(moved.length / sessionCount * 100).toFixed(1)}%); ${
          afterJoin.nodes.map((n) => `${n.nodeId} ${n.shards} shards`).join(", ")
        }`
    )
    console.log(`  overlaps (wa-sim, whole run): ${overlaps}`)
    console.log(
      "  anchors: Akka Cluster Sharding ~45 s, @effect/cluster ~35-40 s, Orleans ~15 s detection, " +
        "fazer-ai/baileys-api ~30 s; target p99 <= 10 s with zero overlaps"
    )
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await new Promise((resolve) => logs.end(resolve))
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
