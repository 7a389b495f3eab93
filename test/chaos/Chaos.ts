/**
 * The chaos run: a whole cluster on real processes (nodes, a gateway, NATS — one server or three —, a private
 * Postgres, wa-sim with linked sessions) and a client that keeps reading status and sending texts, while seeded
 * random faults hit it: a node killed or paused past its lease, a NATS server or Postgres restarted, a node added
 * or drained away (each kind once, in a seeded order, before any kind twice). After every fault the run waits until every session is connected again and checks that wa-sim
 * never saw two live sockets for one device (invariant 1); at the end of each phase, that every send the cluster
 * accepted reached WhatsApp (invariant 2). Sends go into the sessions' durable queues through the session's owner
 * over NATS, as the gateway routes them, each with an idempotency key (the router repeats a request whose reply was
 * lost); a queued text must arrive whatever happens to its node afterwards.
 *
 * A run has one phase per NATS variant. The sessions are linked once, in the first phase; each later phase starts
 * a new cluster on the same Postgres and wa-sim data (a whole-cluster restart, which must resume every session
 * without a QR code) with its own NATS.
 */
import { ClusterConfig } from "@wacluster/cluster/ClusterConfig"
import { Nats } from "@wacluster/cluster/Nats"
import { Router } from "@wacluster/cluster/Router"
import { QueueText } from "@wacluster/domain/Protocol"
import * as LocalCluster from "@wacluster/infra/LocalCluster"
import * as Postgres from "@wacluster/infra/Postgres"
import {
  Cause,
  Context,
  Duration,
  Effect,
  ExecutionStrategy,
  Exit,
  Layer,
  Logger,
  LogLevel,
  Option,
  Redacted,
  Scope
} from "effect"
import { createWriteStream } from "node:fs"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { call, field } from "../support/Gateway.js"
import { eventually, type LinkedSession, sessionsOf, sleep } from "../support/Sessions.js"
import { waSimControl } from "../support/WaSimControl.js"

export interface ChaosOptions {
  readonly seed: number
  /** Faults keep coming in each phase until this much time has passed (the last round still finishes). */
  readonly duration: Duration.Duration
  /** At most this many faults per phase (none: as many as fit in `duration`). */
  readonly rounds?: number | undefined
  /** One phase per entry, in order: 1 is a single nats-server, 3 a 3-server JetStream cluster. */
  readonly natsVariants: ReadonlyArray<1 | 3>
  readonly sessions: number
  /** How long a round may take to recover before the run fails. */
  readonly recoveryLimit?: Duration.Duration
  readonly log?: (line: string) => void
  /** Merged into the services' environment. */
  readonly env?: Readonly<Record<string, string>>
  /** Every service's log lines go to this file (the rounds too), for reading after a failure. */
  readonly logFile?: string
}

export type FaultKind =
  | "kill-node"
  | "pause-node"
  | "restart-nats"
  | "restart-postgres"
  | "add-node"
  | "drain-node"

export interface PhaseSummary {
  readonly natsServers: 1 | 3
  readonly rounds: number
  readonly faults: Readonly<Record<string, number>>
  /** From a phase's start (a whole-cluster restart) until every session was connected. */
  readonly startRecoveryMs: number
  readonly worstRecoveryMs: number
  readonly overlaps: number
  readonly accepted: number
  readonly lost: number
  /** Status reads that got anything but 200 or 503 (a 5xx other than "moving, retry" is a bug). */
  readonly badReads: number
  /** Sends the cluster refused (not accepted: nothing promised), by reason. */
  readonly refused: Readonly<Record<string, number>>
}

export interface ChaosSummary {
  readonly seed: number
  readonly sessions: number
  readonly linkMs: number
  readonly phases: ReadonlyArray<PhaseSummary>
  readonly failure: string | undefined
}

const counts = (record: Readonly<Record<string, number>>) =>
  Object.entries(record).map(([kind, count]) => `${kind}:${count}`).join(",") || "none"

export const phaseLine = (p: PhaseSummary): string =>
  `nats=${p.natsServers} rounds=${p.rounds} faults=${counts(p.faults)} worst-recovery=${
    (p.worstRecoveryMs / 1000).toFixed(1)
  }s overlaps=${p.overlaps} lost=${p.lost}/${p.accepted} bad-reads=${p.badReads} refused-sends=${counts(p.refused)}`

/** The one line a run ends with. */
export const summaryLine = (s: ChaosSummary): string => {
  const all = s.phases
  const total = (pick: (p: PhaseSummary) => number) => all.reduce((sum, p) => sum + pick(p), 0)
  const faults: Record<string, number> = {}
  for (const phase of all) for (const [kind, n] of Object.entries(phase.faults)) faults[kind] = (faults[kind] ?? 0) + n
  return `chaos seed=${s.seed} sessions=${s.sessions} nats=${all.map((p) => p.natsServers).join("+") || "-"} ` +
    `rounds=${total((p) => p.rounds)} faults=${counts(faults)} worst-recovery=${
      (Math.max(0, ...all.map((p) => p.worstRecoveryMs)) / 1000).toFixed(1)
    }s overlaps=${total((p) => p.overlaps)} lost=${total((p) => p.lost)}/${total((p) => p.accepted)}` +
    (s.failure === undefined ? " OK" : ` FAILED: ${s.failure}`)
}

/** mulberry32: a small seeded PRNG, so a failing run can be repeated with its seed. */
const random = (seed: number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The services' default LEASE_TTL: a pause must outlast it for another node to take over. */
const LEASE_TTL_MS = 6_000
/** How long, once every session is connected again, the queued sends of a phase may take to reach WhatsApp. */
const QUEUE_DRAIN_MS = 60_000

class PhaseFailed extends Error {
  constructor(message: string, readonly summary: PhaseSummary) {
    super(message)
  }
}

export const runChaos = async (options: ChaosOptions): Promise<ChaosSummary> => {
  const logFile = options.logFile === undefined ? undefined : createWriteStream(options.logFile, { flags: "a" })
  const print = options.log ?? ((line: string) => console.log(line))
  const log = (line: string) => {
    print(line)
    logFile?.write(`${new Date().toISOString()} ${line}\n`)
  }
  const next = random(options.seed)
  const pickWith = (draw: () => number) => <A>(items: ReadonlyArray<A>): A => {
    const item = items[Math.floor(draw() * items.length)]
    if (item === undefined) throw new Error("pick from an empty list")
    return item
  }
  const pick = pickWith(next)
  // The client draws from a sequence of its own: how many requests it makes depends on timing, and must not change
  // which faults the seed gives.
  const pickForClient = pickWith(random(options.seed + 1))
  const recoveryLimit = Duration.toMillis(options.recoveryLimit ?? Duration.minutes(2))
  const outer = Effect.runSync(Scope.make())
  const phases: Array<PhaseSummary> = []
  /** The kinds of fault this run has injected so far, over all its phases. */
  const injected = new Set<FaultKind>()
  let linkMs = 0
  let failure: string | undefined

  try {
    const dataDir = await mkdtemp(join(tmpdir(), "wacluster-chaos-"))
    await chmod(dataDir, 0o755)
    await Effect.runPromise(
      Scope.addFinalizer(outer, Effect.promise(() => rm(dataDir, { recursive: true, force: true })))
    )
    let linked: ReadonlyArray<LinkedSession> = []
    let tenantToken = ""

    for (const natsServers of options.natsVariants) {
      const scope = await Effect.runPromise(Scope.fork(outer, ExecutionStrategy.sequential))
      // Closed after the cluster (finalizers run last-in first-out): what the run restarts itself lives here.
      const late = await Effect.runPromise(Scope.fork(scope, ExecutionStrategy.sequential))
      const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Scope.extend(effect, scope))
      const faults: Record<string, number> = {}
      const refused: Record<string, number> = {}
      const accepted: Array<{ readonly jid: string; readonly text: string }> = []
      let rounds = 0
      let worstRecoveryMs = 0
      let startRecoveryMs = 0
      let badReads = 0
      let stopClient = false
      let client: Promise<void> = Promise.resolve()
      const summary = (overlaps: number, lost: number): PhaseSummary => ({
        natsServers,
        rounds,
        faults,
        startRecoveryMs,
        worstRecoveryMs,
        overlaps,
        accepted: accepted.length,
        lost,
        badReads,
        refused
      })
      let overlapsSeen = 0

      try {
        const phaseStarted = Date.now()
        log(`chaos: starting 3 nodes, a gateway, ${natsServers} NATS server(s), Postgres and wa-sim`)
        const cluster = await run(LocalCluster.start({
          dataDir,
          nodes: 3,
          natsServers,
          simulate: true,
          fsync: false,
          logs: logFile === undefined ? "quiet" : (line) => logFile.write(`${line}\n`),
          env: { LOG_LEVEL: "Warn", ...options.env }
        }))
        const postgres = cluster.postgres
        if (cluster.waSim === undefined || postgres === undefined) {
          throw new Error("the cluster lacks wa-sim or Postgres")
        }
        const sim = waSimControl(cluster.waSim.controlUrl)
        const gateway = cluster.gatewayUrl
        if (tenantToken === "") {
          const tenant = await call(gateway, "POST", "/tenants", {
            bearer: cluster.adminToken,
            json: { name: "chaos" }
          })
          tenantToken = String(field(tenant.body, "token"))
        }
        const sessions = sessionsOf(gateway, tenantToken, sim)

        const waitRecovered = async (since: number, what: string) => {
          await sessions.untilAllConnected(linked, what, recoveryLimit)
          const recovered = Date.now() - since
          overlapsSeen = (await sim.stats()).overlaps
          if (overlapsSeen > 0) throw new Error(`${what}: wa-sim saw ${overlapsSeen} overlapping logins`)
          return recovered
        }

        if (linked.length === 0) {
          const linkStarted = Date.now()
          linked = await sessions.linkMany(options.sessions, {
            prefix: "chaos",
            firstPhone: 5511900000000,
            concurrency: 16
          })
          linkMs = Date.now() - linkStarted
          log(`chaos: ${linked.length} sessions linked in ${(linkMs / 1000).toFixed(1)} s`)
        } else {
          startRecoveryMs = await waitRecovered(phaseStarted, "a whole-cluster restart")
          log(
            `chaos: a new cluster on the same data: all ${linked.length} connected ${
              (startRecoveryMs / 1000).toFixed(1)
            } s after it started, no QR`
          )
        }

        // The client: reads status and sends texts all the time, through whatever the faults leave standing.
        const nats = Context.get(
          await run(Layer.build(
            Nats.layer({ url: Redacted.make(cluster.natsUrl), name: "chaos-client" }).pipe(
              Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
            )
          )),
          Nats
        )
        const router = Context.get(
          await run(Layer.build(
            Router.layer({ requestTimeout: Duration.seconds(2), budget: Duration.seconds(4) }).pipe(
              Layer.provide(Layer.succeed(Nats, nats)),
              Layer.provide(ClusterConfig.layerWith({}))
            )
          )),
          Router
        )
        let sequence = 0
        client = (async () => {
          while (!stopClient) {
            const session = pickForClient(linked)
            const read = await sessions.status(session).catch(() => undefined)
            if (read !== undefined && read.status !== 200 && read.status !== 503) {
              badReads++
              log(`chaos: status of ${session.id} answered ${read.status} ${JSON.stringify(read.body)}`)
            }
            const target = pickForClient(linked)
            const text = `chaos ${options.seed}/${natsServers} #${sequence++}`
            const exit = await Effect.runPromise(
              Effect.exit(router.send(
                new QueueText({
                  sessionId: session.id,
                  to: `${target.phoneNumber}@s.whatsapp.net`,
                  text,
                  idempotencyKey: text
                })
              ))
            )
            if (Exit.isSuccess(exit)) {
              accepted.push({ jid: session.jid, text })
            } else {
              const reason = Option.getOrElse(
                Option.map(Cause.failureOption(exit.cause), (error) => error._tag),
                () => "defect"
              )
              refused[reason] = (refused[reason] ?? 0) + 1
            }
            await sleep(100)
          }
        })()

        const running = () => cluster.nodes.map((node) => node.nodeId)
        let database = postgres
        const inject = async (kind: FaultKind): Promise<string> => {
          switch (kind) {
            case "kill-node": {
              const victim = pick(running())
              await Effect.runPromise(cluster.stopNode(victim, "SIGKILL"))
              return `killed ${victim}`
            }
            case "pause-node": {
              const victim = pick(cluster.nodes)
              // Past LEASE_TTL, and long enough that the sessions it held are logged in elsewhere well before it wakes:
              // wa-sim cannot tell a frozen socket that wakes within its probe window (1.5 s) of a newer login from
              // one that was alive, and would count an overlap that never was.
              const pausedFor = 2 * LEASE_TTL_MS + 3_000 + Math.floor(next() * 3_000)
              await Effect.runPromise(victim.service.kill("SIGSTOP"))
              await sleep(pausedFor)
              await Effect.runPromise(victim.service.kill("SIGCONT"))
              return `paused ${victim.nodeId} for ${(pausedFor / 1000).toFixed(1)} s`
            }
            case "restart-nats": {
              const index = Math.floor(next() * cluster.natsServers.length)
              const server = pick(cluster.natsServers.slice(index, index + 1))
              await Effect.runPromise(server.kill("SIGKILL"))
              await sleep(2_000 + Math.floor(next() * 3_000))
              await Effect.runPromise(server.restart)
              return `restarted NATS server ${index + 1} of ${cluster.natsServers.length}`
            }
            case "restart-postgres": {
              await Effect.runPromise(database.process.stop("SIGINT"))
              await sleep(2_000 + Math.floor(next() * 3_000))
              // In the scope that closes after the cluster's: the nodes stop before their database does.
              database = await Effect.runPromise(
                Scope.extend(Postgres.start({ dataDir: join(dataDir, "pg"), port: postgres.port, fsync: false }), late)
              )
              return "restarted Postgres"
            }
            case "add-node": {
              const node = await Effect.runPromise(cluster.addNode())
              return `added ${node.nodeId}`
            }
            case "drain-node": {
              const victim = pick(running())
              const drained = await call(gateway, "POST", `/admin/nodes/${victim}/drain`, {
                bearer: cluster.adminToken
              })
              if (drained.status !== 202) {
                throw new Error(`drain ${victim}: ${drained.status} ${JSON.stringify(drained.body)}`)
              }
              await eventually(
                `${victim} drained`,
                () => call(gateway, "GET", "/admin/cluster", { bearer: cluster.adminToken }),
                (reply) => {
                  const nodes = field(reply.body, "nodes")
                  return Array.isArray(nodes) &&
                    nodes.some((n) => field(n, "nodeId") === victim && field(n, "shards") === 0)
                },
                60_000
              )
              await Effect.runPromise(cluster.stopNode(victim, "SIGTERM"))
              return `drained and stopped ${victim}`
            }
          }
        }

        /** Faults possible now: the cluster keeps between 2 and 4 nodes. */
        const possible = (): ReadonlyArray<FaultKind> => {
          const nodes = cluster.nodes.length
          return [
            ...(nodes >= 3 ? ["kill-node", "drain-node"] as const : []),
            "pause-node",
            "restart-nats",
            "restart-postgres",
            ...(nodes <= 3 ? ["add-node"] as const : [])
          ]
        }

        const endAt = Date.now() + Duration.toMillis(options.duration)
        while (Date.now() < endAt && rounds < (options.rounds ?? Infinity)) {
          // Every kind once before any twice (as far as the cluster's size allows), so a short run covers them all.
          const now = possible()
          const fresh = now.filter((kind) => !injected.has(kind))
          const kind = pick(fresh.length > 0 ? fresh : now)
          injected.add(kind)
          const started = Date.now()
          const what = await inject(kind)
          faults[kind] = (faults[kind] ?? 0) + 1
          rounds++
          const recovered = await waitRecovered(started, what)
          worstRecoveryMs = Math.max(worstRecoveryMs, recovered)
          log(
            `chaos: round ${rounds}: ${what}; all ${linked.length} connected ${(recovered / 1000).toFixed(1)} s after`
          )
          await sleep(1_000)
        }

        stopClient = true
        await client
        // Every accepted (queued) send must reach WhatsApp, whatever happened meanwhile: the queues get a while to
        // drain now that every session is connected again.
        const byDevice = new Map<string, Set<string>>()
        const undecryptable: Array<string> = []
        const missing = async () => {
          undecryptable.length = 0
          const waitingOn = new Set(accepted.filter((a) => byDevice.get(a.jid)?.has(a.text) !== true).map((a) => a.jid))
          for (const jid of waitingOn) {
            const sent = await sim.sent(jid)
            byDevice.set(jid, new Set(sent.flatMap((m) => (m.text === null ? [] : [m.text]))))
            for (const m of sent) if (m.text === null) undecryptable.push(`${jid}: ${m.error ?? "not a text"}`)
          }
          return accepted.filter((a) => byDevice.get(a.jid)?.has(a.text) !== true)
        }
        let lost = await missing()
        for (const drainUntil = Date.now() + QUEUE_DRAIN_MS; lost.length > 0 && Date.now() < drainUntil;) {
          await sleep(1_000)
          lost = await missing()
        }
        const done = summary((await sim.stats()).overlaps, lost.length)
        if (lost.length > 0) {
          throw new PhaseFailed(
            `${lost.length} accepted sends never reached WhatsApp readable (first: ${lost[0]?.text}; ` +
              `waited ${QUEUE_DRAIN_MS / 1000} s for the queues to drain); ` +
              `${undecryptable.length} arrived but could not be decrypted (first: ${undecryptable[0] ?? "-"})`,
            done
          )
        }
        if (badReads > 0) throw new PhaseFailed(`${badReads} status reads answered neither 200 nor 503`, done)
        phases.push(done)
        log(`chaos: phase ${phaseLine(done)}`)
      } catch (error) {
        const partial = error instanceof PhaseFailed ? error.summary : summary(overlapsSeen, 0)
        phases.push(partial)
        throw error
      } finally {
        stopClient = true
        await client.catch(() => undefined)
        await Effect.runPromise(Scope.close(scope, Exit.void))
      }
    }
  } catch (error) {
    failure = error instanceof Error ? error.message : String(error)
    log(`chaos: failed: ${failure}`)
  } finally {
    await Effect.runPromise(Scope.close(outer, Exit.void))
  }
  const result: ChaosSummary = { seed: options.seed, sessions: options.sessions, linkMs, phases, failure }
  // The log ends with the same summary line the caller prints.
  logFile?.write(`${new Date().toISOString()} ${summaryLine(result)}\n`)
  await new Promise((resolve) => logFile === undefined ? resolve(undefined) : logFile.end(resolve))
  return result
}
