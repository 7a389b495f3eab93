/**
 * Infrastructure faults on real processes (nats-server, Postgres, wa-sim, a gateway, two nodes), each cluster with
 * its own Postgres so it can be restarted: every NATS server down (the nodes fence themselves, then come back by
 * themselves), a Postgres restart (WhatsApp sockets stay up, reads answer 503 + Retry-After meanwhile, nothing
 * received is lost), and one server of a 3-server NATS cluster killed (the cluster keeps serving).
 */
import { SqlClient } from "@effect/sql"
import type { SessionId } from "@wacluster/domain/Ids"
import * as LocalCluster from "@wacluster/infra/LocalCluster"
import type { NatsServer } from "@wacluster/infra/NatsServer"
import * as Postgres from "@wacluster/infra/Postgres"
import * as Database from "@wacluster/store/Database"
import { Effect, ExecutionStrategy, Exit, Scope } from "effect"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { call, field } from "../support/Gateway.js"
import { eventually, type LinkedSession, sessionsOf, sleep, type TestSession } from "../support/Sessions.js"
import { type WaSimControl, waSimControl } from "../support/WaSimControl.js"

const SESSIONS = 6
/** The services' default LEASE_TTL; a node fences itself 0.6 × LEASE_TTL after its last renewal. */
const LEASE_TTL_MS = 6_000
/** The fence, plus slack for a busy machine (wa-sim sees the close a moment after the node decides). */
const FENCE_BOUND_MS = 0.6 * LEASE_TTL_MS + 4_400
/** The gateway's default ROUTER_BUDGET (8 s) and one last ROUTER_REQUEST_TIMEOUT (2 s), plus slack. */
const READ_BOUND_MS = 14_000

interface Faulty {
  readonly cluster: LocalCluster.LocalCluster
  readonly sim: WaSimControl
  readonly sessions: ReturnType<typeof sessionsOf>
  readonly linked: ReadonlyArray<LinkedSession>
  /** Stops the private Postgres (fast shutdown) and, after `down`, starts it again on its port and data. */
  readonly restartPostgres: (down: () => Promise<void>) => Promise<void>
  /** The last service log lines, shown when a test fails. */
  readonly logTail: () => ReadonlyArray<string>
  readonly stop: () => Promise<void>
}

/** A cluster of two nodes on its own NATS and Postgres, with SESSIONS linked sessions, every one connected. */
const startFaulty = async (natsServers: 1 | 3, firstPhone: number): Promise<Faulty> => {
  const scope = Effect.runSync(Scope.make())
  const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Scope.extend(effect, scope))
  const lines: Array<string> = []
  try {
    const dataDir = await mkdtemp(join(tmpdir(), "wacluster-faults-"))
    // Postgres runs as `postgres` when we are root and must traverse it.
    await chmod(dataDir, 0o755)
    await run(Effect.addFinalizer(() => Effect.promise(() => rm(dataDir, { recursive: true, force: true }))))
    // Closes after the cluster (finalizers run last-in first-out): a Postgres the test restarts lives here, so the
    // nodes stop before their database does.
    const late = await Effect.runPromise(Scope.fork(scope, ExecutionStrategy.sequential))
    const cluster = await run(LocalCluster.start({
      dataDir,
      nodes: 2,
      natsServers,
      simulate: true,
      fsync: false,
      logs: (line) => {
        lines.push(line)
        if (lines.length > 400) lines.splice(0, lines.length - 400)
      },
      env: { LOG_LEVEL: "Warn" },
      // Generous: other runs may share this machine's two cores.
      startTimeout: "90 seconds"
    }))
    const { postgres, waSim } = cluster
    if (postgres === undefined || waSim === undefined) throw new Error("the cluster lacks its Postgres or wa-sim")
    const sim = waSimControl(waSim.controlUrl)
    const tenant = await call(cluster.gatewayUrl, "POST", "/tenants", {
      bearer: cluster.adminToken,
      json: { name: "faults" }
    })
    const sessions = sessionsOf(cluster.gatewayUrl, String(field(tenant.body, "token")), sim)
    const linked = await sessions.linkMany(SESSIONS, { prefix: "faults", firstPhone, concurrency: SESSIONS })
    let database = postgres
    const restartPostgres = async (down: () => Promise<void>) => {
      await Effect.runPromise(database.process.stop("SIGINT"))
      await down()
      database = await Effect.runPromise(
        Scope.extend(Postgres.start({ dataDir: join(dataDir, "pg"), port: postgres.port, fsync: false }), late)
      )
    }
    return {
      cluster,
      sim,
      sessions,
      linked,
      restartPostgres,
      logTail: () => [...lines],
      stop: async () => {
        // The nodes first, while NATS still runs: a nats-server restarted by a test closes before the services
        // do (its new scope is the youngest), and a node cannot drain without NATS (SIGKILL after 10 s).
        await Effect.runPromise(
          Effect.forEach(cluster.nodes, (node) => cluster.stopNode(node.nodeId), { concurrency: "unbounded" })
        )
        await Effect.runPromise(Scope.close(scope, Exit.void))
      }
    }
  } catch (error) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  }
}

/** A status read through the gateway, with how long it took and its Retry-After. */
const timedStatus = async (faulty: Faulty, session: TestSession) => {
  const started = Date.now()
  const reply = await faulty.sessions.status(session)
  return { status: reply.status, retryAfter: reply.headers.get("retry-after"), ms: Date.now() - started }
}

/** Every linked session answers connected through the gateway; returns how long that took from `since`. */
const allConnected = async (faulty: Faulty, what: string, since: number, ms = 60_000) => {
  await faulty.sessions.untilAllConnected(faulty.linked, what, ms)
  return Date.now() - since
}

const inboundTexts = (databaseUrl: string, sessionId: SessionId) =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<{ text: string }>`SELECT body->>'text' AS text FROM messages
        WHERE session_id = ${sessionId} AND direction = 'inbound'`).pipe(
        Effect.provide(Database.layerFromUrl(databaseUrl, { maxConnections: 1 })),
        Effect.map((rows) => rows.map((row) => row.text))
      )
  )

interface Read {
  readonly phase: string
  readonly status: number
  readonly retryAfter: string | null
  readonly ms: number
  /** Since the current phase began. */
  readonly sinceMark: number
  readonly at: number
}

/**
 * Keeps reading every session's status through the gateway and asking wa-sim which devices are live, from now
 * until `stop`; `mark` names the phase the following reads belong to.
 */
const watch = (faulty: Faulty) => {
  let phase = "before"
  let markedAt = Date.now()
  let running = true
  const reads: Array<Read> = []
  const socketsLost = new Map<string, string>()
  const liveCounts: Array<number> = []
  const loop = (async () => {
    while (running) {
      const devices = await faulty.sim.devices()
      const live = faulty.linked.filter((session) => devices.some((d) => d.jid === session.jid && d.live))
      if (liveCounts.at(-1) !== live.length) liveCounts.push(live.length)
      for (const session of faulty.linked) {
        if (!live.includes(session) && !socketsLost.has(session.id)) {
          socketsLost.set(session.id, `${phase} + ${Date.now() - markedAt} ms`)
        }
      }
      for (const session of faulty.linked) {
        const read = await timedStatus(faulty, session)
        reads.push({ phase, sinceMark: Date.now() - markedAt, at: Date.now(), ...read })
      }
      await sleep(200)
    }
  })()
  return {
    mark: (next: string) => {
      phase = next
      markedAt = Date.now()
    },
    stop: async () => {
      running = false
      await loop
      return { reads, socketsLost: Object.fromEntries(socketsLost), liveCounts }
    }
  }
}

/** "phase: status×count …, slowest n ms" for the log. */
const summary = (reads: ReadonlyArray<Read>) => {
  const counts = new Map<string, number>()
  for (const read of reads) {
    counts.set(`${read.phase}:${read.status}`, (counts.get(`${read.phase}:${read.status}`) ?? 0) + 1)
  }
  const slowest = Math.max(0, ...reads.map((read) => read.ms))
  return `${[...counts].map(([key, n]) => `${key}×${n}`).join(" ")}, slowest ${slowest} ms`
}

/**
 * What a server of a NATS cluster does right now, for the log: the JetStream groups it leads ("meta", or a stream;
 * a KV bucket is the stream `KV_<bucket>`) and the names of its clients ("node", "gateway").
 */
const rolesOf = async (server: NatsServer) => {
  const monitor = (path: string) =>
    fetch(`http://127.0.0.1:${server.monitorPort}${path}`).then((reply) => reply.json() as Promise<unknown>)
  const [varz, jsz, connz] = await Promise.all([
    monitor("/varz"),
    monitor("/jsz?accounts=true&streams=true"),
    monitor("/connz")
  ])
  const self = field(varz, "server_name")
  const streams = field(jsz, "account_details", 0, "stream_detail")
  const connections = field(connz, "connections")
  return {
    server: self,
    leads: [
      ...(field(jsz, "meta_cluster", "leader") === self ? ["meta"] : []),
      ...(Array.isArray(streams) ? streams : []).filter((stream) => field(stream, "cluster", "leader") === self)
        .map((stream) => field(stream, "name"))
    ],
    clients: (Array.isArray(connections) ? connections : []).map((connection) => field(connection, "name"))
  }
}

/** A cluster for the enclosing describe block: started before its tests, stopped after, its logs shown on failure. */
const faultyCluster = (natsServers: 1 | 3, firstPhone: number) => {
  let faulty: Faulty | undefined
  beforeAll(async () => {
    faulty = await startFaulty(natsServers, firstPhone)
  }, 180_000)
  afterAll(() => faulty?.stop(), 60_000)
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => console.log(faulty?.logTail().join("\n") ?? "no cluster"))
  })
  return () => {
    if (faulty === undefined) throw new Error("the cluster did not start")
    return faulty
  }
}

describe("one nats-server, then Postgres, restarted under linked sessions", () => {
  const world = faultyCluster(1, 4917600000000)

  it(
    "NATS down: sockets close within 0.6 × LEASE_TTL, reads get 503; NATS back: all reconnect by themselves",
    async () => {
      const { cluster, sim } = world()
      const [server] = cluster.natsServers
      if (server === undefined) throw new Error("no private nats-server")
      expect(await sim.stats()).toEqual({ devices: SESSIONS, liveSockets: SESSIONS, overlaps: 0 })

      const killedAt = Date.now()
      await Effect.runPromise(server.kill("SIGKILL"))
      const [fencedMs, reads] = await Promise.all([
        eventually("every WhatsApp socket closed", sim.stats, (stats) => stats.liveSockets === 0, 20_000)
          .then(() => Date.now() - killedAt),
        Promise.all(world().linked.map((session) => timedStatus(world(), session)))
      ])
      console.log(`faults: NATS down: sockets closed after ${fencedMs} ms; reads ${JSON.stringify(reads)}`)
      expect(fencedMs).toBeLessThan(FENCE_BOUND_MS)
      for (const read of reads) {
        expect(read.status).toBe(503)
        expect(Number(read.retryAfter)).toBeGreaterThan(0)
        expect(read.ms).toBeLessThan(READ_BOUND_MS)
      }
      // Fenced nodes stay off WhatsApp while NATS is away: nobody can tell them they still own their shards.
      await sleep(2_000)
      expect((await sim.stats()).liveSockets).toBe(0)

      const restartedAt = Date.now()
      await Effect.runPromise(server.restart)
      const recoveredMs = await allConnected(world(), "after NATS came back", restartedAt)
      console.log(`faults: NATS back: all ${SESSIONS} connected ${recoveredMs} ms after the restart began`)
      // Same devices, nothing scanned again, never two sockets for one device.
      expect(await sim.stats()).toEqual({ devices: SESSIONS, liveSockets: SESSIONS, overlaps: 0 })
    },
    120_000
  )

  it(
    "Postgres restarted: sockets stay up, reads get 503 + Retry-After, a text received meanwhile is kept",
    async () => {
      const { cluster, sim, linked } = world()
      await allConnected(world(), "before the Postgres restart", Date.now())
      const [receiver] = linked
      if (receiver === undefined) throw new Error("no linked session")
      const observed = watch(world())
      const text = "hallo, während Postgres neu startet"
      await world().restartPostgres(async () => {
        observed.mark("down")
        await sim.message(receiver.jid, "4917699990000", text)
        await sleep(6_000)
        observed.mark("starting")
      })
      const restartedAt = Date.now()
      observed.mark("back")
      const recoveredMs = await allConnected(world(), "after Postgres came back", restartedAt, 30_000)
      const { reads, socketsLost, liveCounts } = await observed.stop()
      console.log(`faults: Postgres back: all connected after ${recoveredMs} ms; reads ${summary(reads)}`)

      // A Postgres outage must not cost a single WhatsApp connection.
      expect(socketsLost).toEqual({})
      expect(liveCounts).toEqual([SESSIONS])
      // Never 401 (the key is fine) nor 500: 503 with Retry-After once the gateway can no longer vouch for what it
      // cached (1 s without reading the credentials' revision).
      for (const read of reads) expect([200, 503], JSON.stringify(read)).toContain(read.status)
      const settledDown = reads.filter((read) => read.phase === "down" && read.sinceMark > 1_500)
      expect(settledDown.length).toBeGreaterThan(SESSIONS)
      for (const read of settledDown) {
        expect(read.status, JSON.stringify(read)).toBe(503)
        expect(Number(read.retryAfter)).toBeGreaterThan(0)
        expect(read.ms).toBeLessThan(READ_BOUND_MS)
      }

      // The text that arrived while Postgres was away is in the history and counted once.
      const stored = await eventually(
        "the text received during the outage stored",
        () => inboundTexts(cluster.databaseUrl, receiver.id),
        (texts) => texts.length > 0,
        30_000
      )
      expect(stored).toEqual([text])
      const status = await eventually(
        "the text counted",
        () => world().sessions.status(receiver),
        (reply) => reply.status === 200 && field(reply.body, "metrics", "messagesReceived") === 1
      )
      expect(field(status.body, "status")).toBe("connected")
      expect(await sim.stats()).toEqual({ devices: SESSIONS, liveSockets: SESSIONS, overlaps: 0 })
    },
    120_000
  )
})

describe("a 3-server NATS cluster, one server killed under linked sessions", () => {
  const world = faultyCluster(3, 4917700000000)

  it("serves through the loss of one server of three and its return; all connected, never twice", async () => {
    const { cluster, sim } = world()
    const server = cluster.natsServers[2]
    if (server === undefined) throw new Error("no third nats-server")
    expect(await sim.stats()).toEqual({ devices: SESSIONS, liveSockets: SESSIONS, overlaps: 0 })
    // If it leads the shard leases' stream, the bucket is unwritable until a new leader is elected (about 5-8 s on
    // nats-server 2.9), longer than the fence (0.6 × LEASE_TTL); renewals in flight to it when it dies are lost
    // too. Either way some shards stop and resume: with the default LEASE_TTL a session may reconnect.
    const roles = await rolesOf(server)

    const observed = watch(world())
    const killedAt = Date.now()
    observed.mark("down")
    await Effect.runPromise(server.kill("SIGKILL"))
    // Reads go on in `watch` all along.
    await sleep(12_000)
    const recoveredMs = await allConnected(world(), "with nats-3 down", killedAt, 60_000 - (Date.now() - killedAt))
    observed.mark("back")
    const restartedAt = Date.now()
    await Effect.runPromise(server.restart)
    const backMs = await allConnected(world(), "after nats-3 came back", restartedAt)
    await sleep(2_000)
    const { reads, socketsLost, liveCounts } = await observed.stop()
    const unavailable = reads.filter((read) => read.status === 503).map((read) => read.at - killedAt)
    console.log(
      `faults: killed ${JSON.stringify(roles)}: all connected ${recoveredMs} ms after; ` +
        `sockets lost ${JSON.stringify(socketsLost)}; live sockets ${JSON.stringify(liveCounts)}; ` +
        `503s at ${JSON.stringify(unavailable)} ms; back: all connected ${backMs} ms after the restart; ` +
        `reads ${summary(reads)}`
    )

    for (const read of reads) {
      expect([200, 503], JSON.stringify(read)).toContain(read.status)
      expect(read.ms).toBeLessThan(READ_BOUND_MS)
    }
    // Unavailable only while shards move, never once they have settled, nor when the server rejoins.
    expect(Math.max(0, ...unavailable)).toBeLessThan(20_000)
    expect(reads.filter((read) => read.phase === "back" && read.status !== 200)).toEqual([])
    // The returning server may take a stream's leadership back: another election, which can again outlast the fence
    // at the default LEASE_TTL and reconnect a few sessions. They come back, and never run twice.
    await allConnected(world(), "after nats-3 rejoined", Date.now())
    expect(await sim.stats()).toEqual({ devices: SESSIONS, liveSockets: SESSIONS, overlaps: 0 })
  }, 180_000)
})
