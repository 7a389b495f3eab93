/**
 * Webhook benchmark: deliveries per second from a cluster's nodes to a local receiver, and the latency from a state
 * change to its webhook arriving.
 *
 *   pnpm bench:webhooks [--sessions 100] [--events 20000] [--nodes 2] [--latency-seconds 15] [--baseline-seconds 10]
 *
 * Every session has one endpoint (every event type) on one receiver: a plain node:http server in this process that
 * answers 200 at once and notes when each delivery arrived.
 *
 * 1. Baseline: the same machine's raw rate of signed POSTs of an event envelope from undici (the client the nodes
 *    deliver with) to that receiver, as many in flight as there are endpoints, measured in the same run.
 * 2. Deliveries per second: `--events` events are published onto WA_EVENTS the way the nodes publish them (the
 *    product's envelope and subject, the event id as the message id), spread over the sessions as fast as
 *    JetStream takes them; measured from the first publish to the last arrival, through the whole path (the
 *    durable consumer, the Postgres queue, the shard owner's lanes, the signed POST, the delivery log). Also
 *    checked: none lost, and each session's events arrived in the order they were published.
 * 3. Latency of real state changes: sessions are stopped and reconnected through the gateway over and over
 *    (session.status, session.socket-disconnected, session.qr-updated…, made by the session actors); latency is an
 *    event's arrival minus its envelope's `timestamp` (when the actor made the change).
 */
import { jetstream } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import { eventSubject } from "@wacluster/domain/Events"
import { makeEventId } from "@wacluster/domain/Ids"
import * as Signature from "@wacluster/webhooks/Signature"
import { Effect } from "effect"
import { once } from "node:events"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { parseArgs } from "node:util"
import { Pool } from "undici"
import { call, createTenant, text } from "../support/Gateway.js"
import { type Figures, fromLatencies, percentile, row, withCluster } from "./cluster.js"

const { values } = parseArgs({
  options: {
    sessions: { type: "string", default: "100" },
    events: { type: "string", default: "20000" },
    nodes: { type: "string", default: "2" },
    "latency-seconds": { type: "string", default: "15" },
    "baseline-seconds": { type: "string", default: "10" },
    churners: { type: "string", default: "20" },
    "churn-pause": { type: "string", default: "500" }
  }
})
const sessionCount = Number(values.sessions)
const eventCount = Number(values.events)
const latencySeconds = Number(values["latency-seconds"])
const baselineSeconds = Number(values["baseline-seconds"])
const churners = Number(values.churners)
const churnPauseMs = Number(values["churn-pause"])

interface Arrival {
  readonly at: number
  readonly id: string
  readonly type: string
  readonly timestamp: string
  readonly sessionId: string
  readonly benchSeq: number | undefined
}

/** Wall-clock milliseconds with sub-millisecond resolution (comparable with the envelopes' timestamps). */
const nowMs = () => performance.timeOrigin + performance.now()

/** The receiver: answers 200 at once, notes every delivery. */
const startReceiver = async () => {
  const arrivals: Array<Arrival> = []
  /** The ids of the benchmark's own events that arrived (repeats once). */
  const benchIds = new Set<string>()
  const waiters: Array<() => void> = []
  const server = createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      const at = nowMs()
      res.writeHead(200).end()
      if (req.url !== "/hook") return
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
        id: string
        type: string
        timestamp: string
        data: { sessionId: string; benchSeq?: number }
      }
      arrivals.push({
        at,
        id: body.id,
        type: body.type,
        timestamp: body.timestamp,
        sessionId: body.data.sessionId,
        benchSeq: body.data.benchSeq
      })
      if (body.data.benchSeq !== undefined) benchIds.add(body.id)
      for (const wake of waiters.splice(0)) wake()
    })
  })
  server.keepAliveTimeout = 60_000
  server.listen(0, "127.0.0.1")
  await once(server, "listening")
  const port = (server.address() as AddressInfo).port
  /** Resolves once `check` holds (checked on each arrival), or after `ms`. */
  const until = (check: () => boolean, ms: number) =>
    new Promise<boolean>((resolve) => {
      const deadline = setTimeout(() => resolve(check()), ms)
      const test = () => {
        if (check()) {
          clearTimeout(deadline)
          resolve(true)
        } else waiters.push(test)
      }
      test()
    })
  return {
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    arrivals,
    benchIds,
    until,
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

/** An event envelope as the nodes publish it. */
const envelope = (tenantId: string, sessionId: string, seq: number) => {
  const id = Effect.runSync(makeEventId)
  const payload = JSON.stringify({
    id,
    type: "session.status",
    timestamp: new Date().toISOString(),
    tenantId,
    data: { sessionId, status: "connected", reason: null, benchSeq: seq }
  })
  return { id, payload }
}

/** Raw signed POSTs to the receiver, `concurrency` in flight, for `seconds` (the baseline). */
const rawPosts = async (url: string, seconds: number, concurrency: number): Promise<Figures> => {
  const target = new URL(url)
  const pool = new Pool(target.origin, { connections: concurrency })
  const secret = Signature.newSecret()
  const latencies: Array<number> = []
  let errors = 0
  const until = performance.now() + seconds * 1000
  const worker = async () => {
    while (performance.now() < until) {
      const { id, payload } = envelope("ten_bench", "sess_baseline", 0)
      const started = performance.now()
      try {
        const response = await pool.request({
          method: "POST",
          path: "/baseline",
          headers: {
            "content-type": "application/json",
            ...Signature.headers([secret], id, Math.floor(Date.now() / 1000), payload)
          },
          body: payload
        })
        await response.body.dump()
        if (response.statusCode === 200) latencies.push(performance.now() - started)
        else errors++
      } catch {
        errors++
      }
    }
  }
  const began = performance.now()
  await Promise.all(Array.from({ length: concurrency }, worker))
  const elapsed = (performance.now() - began) / 1000
  await pool.close()
  return fromLatencies(latencies, elapsed, errors)
}

const latencyFigures = (arrivals: ReadonlyArray<Arrival>, from: (arrival: Arrival) => number, seconds: number) =>
  fromLatencies(arrivals.map((arrival) => arrival.at - from(arrival)), seconds, 0)

const main = () =>
  withCluster({
    nodes: Number(values.nodes),
    logs: "quiet",
    // Sessions wait for a scan on wa-sim (showing QR codes) rather than failing to reach WhatsApp over and over.
    simulate: true,
    env: { LOG_LEVEL: "Warn", WEBHOOK_ALLOW_NETWORKS: "127.0.0.0/8" }
  }, async (cluster) => {
    const gateway = cluster.gatewayUrl
    const receiver = await startReceiver()

    process.stdout.write(`baseline: raw signed POSTs to the receiver for ${baselineSeconds} s…\n`)
    const baseline = await rawPosts(receiver.url("/baseline"), baselineSeconds, sessionCount)

    process.stdout.write(`creating ${sessionCount} sessions with an endpoint each…\n`)
    const tenant = await createTenant(cluster, "bench")
    const sessions: Array<{ id: string; key: string }> = []
    for (let i = 0; i < sessionCount; i++) {
      const created = await call(gateway, "POST", "/sessions", {
        bearer: tenant.token,
        json: { name: `bench-${i}`, city: "jakarta" }
      })
      const id = text(created.body, "session", "id")
      sessions.push({ id, key: text(created.body, "apiKey", "key") })
      const hook = await call(gateway, "POST", `/sessions/${id}/webhooks`, {
        bearer: tenant.token,
        json: { url: receiver.url("/hook") }
      })
      if (hook.status !== 201) throw new Error(`webhook for ${id}: ${hook.status} ${JSON.stringify(hook.body)}`)
    }
    // The sessions' own first events (connecting, QR codes) go out now; let them settle.
    await new Promise((resolve) => setTimeout(resolve, 5_000))

    process.stdout.write(`publishing ${eventCount} events onto WA_EVENTS…\n`)
    const nc = await connect({ servers: cluster.natsUrl, name: "bench-webhooks" })
    const js = jetstream(nc)
    const published = new Map<string, { readonly at: number; readonly sessionId: string; readonly seq: number }>()
    const benchArrivals = () => receiver.arrivals.filter((arrival) => arrival.benchSeq !== undefined)
    const firstPublish = nowMs()
    // Per session in order (a session's events come from its one owner, one after another); sessions in parallel.
    const publishers = sessions.map(async (session, index) => {
      for (let seq = index; seq < eventCount; seq += sessions.length) {
        const { id, payload } = envelope(tenant.id, session.id, seq)
        published.set(id, { at: nowMs(), sessionId: session.id, seq })
        await js.publish(eventSubject(tenant.id, session.id, "session.status"), payload, { msgID: id })
      }
    })
    await Promise.all(publishers)
    const lastPublish = nowMs()
    const complete = await receiver.until(() => receiver.benchIds.size >= eventCount, 300_000)
    const arrived = benchArrivals()
    const lastArrival = Math.max(...arrived.map((arrival) => arrival.at))
    const unique = new Map<string, Arrival>()
    for (const arrival of arrived) if (!unique.has(arrival.id)) unique.set(arrival.id, arrival)
    const lost = eventCount - unique.size
    // Order: each session's first arrivals in publish order.
    const lastSeq = new Map<string, number>()
    let outOfOrder = 0
    for (const arrival of unique.values()) {
      const previous = lastSeq.get(arrival.sessionId) ?? -1
      if ((arrival.benchSeq ?? 0) < previous) outOfOrder++
      lastSeq.set(arrival.sessionId, Math.max(previous, arrival.benchSeq ?? 0))
    }
    const deliverSeconds = (lastArrival - firstPublish) / 1000
    const deliveries: Figures = {
      ...latencyFigures(Array.from(unique.values()), (arrival) => published.get(arrival.id)?.at ?? NaN, deliverSeconds),
      errors: lost
    }
    // The steady part: arrivals per second between 10% and 90% of them.
    const times = Array.from(unique.values()).map((arrival) => arrival.at).sort((a, b) => a - b)
    const [p10, p90] = [percentile(times, 10), percentile(times, 90)]
    const steady = (0.8 * times.length) / ((p90 - p10) / 1000)

    process.stdout.write(`stopping and reconnecting sessions for ${latencySeconds} s…\n`)
    // When each event reached WA_EVENTS (a plain subscription on its subjects), to split the latency in two.
    const onNats = new Map<string, number>()
    const subscription = nc.subscribe(`wa.evt.${tenant.id}.>`, {
      callback: (_error, message) => {
        const at = nowMs()
        const id = (message.json() as { id?: string }).id
        if (id !== undefined && !onNats.has(id)) onNats.set(id, at)
      }
    })
    const changesFrom = nowMs()
    const until = performance.now() + latencySeconds * 1000
    let changes = 0
    const churn = sessions.slice(0, Math.min(churners, sessions.length)).map(async ({ id, key }) => {
      while (performance.now() < until) {
        for (const action of ["stop", "reconnect"]) {
          const reply = await call(gateway, "POST", `/sessions/${id}/${action}`, { apiKey: key })
          if (reply.status >= 300) throw new Error(`${action} ${id}: ${reply.status} ${JSON.stringify(reply.body)}`)
          changes++
          await new Promise((resolve) => setTimeout(resolve, churnPauseMs))
        }
      }
    })
    await Promise.all(churn)
    const changesTo = nowMs()
    // Whatever the changes made, delivered: wait until nothing new has arrived for 3 s.
    let seen = -1
    while (seen !== receiver.arrivals.length) {
      seen = receiver.arrivals.length
      await new Promise((resolve) => setTimeout(resolve, 3_000))
    }
    const real = receiver.arrivals.filter((arrival) =>
      arrival.benchSeq === undefined && Date.parse(arrival.timestamp) >= changesFrom &&
      Date.parse(arrival.timestamp) <= changesTo
    )
    const byType = new Map<string, number>()
    for (const arrival of real) byType.set(arrival.type, (byType.get(arrival.type) ?? 0) + 1)
    const realFigures = latencyFigures(
      real,
      (arrival) => Date.parse(arrival.timestamp),
      (changesTo - changesFrom) / 1000
    )
    const seenOnNats = real.filter((arrival) => onNats.has(arrival.id))
    const toNats = fromLatencies(
      seenOnNats.map((arrival) => (onNats.get(arrival.id) ?? NaN) - Date.parse(arrival.timestamp)),
      (changesTo - changesFrom) / 1000,
      0
    )
    const fromNats = latencyFigures(seenOnNats, (a) => onNats.get(a.id) ?? NaN, (changesTo - changesFrom) / 1000)
    subscription.unsubscribe()

    await nc.close()
    await receiver.close()
    process.stdout.write([
      "",
      `webhook benchmark: ${values.nodes} nodes, ${sessionCount} sessions with an endpoint each`,
      row("baseline: raw signed POSTs (undici)", baseline, "/s"),
      row("deliveries (publish → arrival)", deliveries, "/s"),
      `  ${eventCount} events published in ${((lastPublish - firstPublish) / 1000).toFixed(1)} s, all arrived ` +
      `after ${deliverSeconds.toFixed(1)} s${complete ? "" : " (INCOMPLETE)"}; steady rate (10%–90% of ` +
      `arrivals) ${steady.toFixed(0)}/s; lost ${lost}, repeats ${arrived.length - unique.size}, out of session ` +
      `order ${outOfOrder}`,
      `ratio (deliveries / raw POSTs): ${(deliveries.perSecond / baseline.perSecond).toFixed(2)}×`,
      row("state change → webhook arrival", realFigures, "/s"),
      row("  of which: state change → on NATS", toNats, "/s"),
      row("  of which: on NATS → webhook arrival", fromNats, "/s"),
      `  ${churners} sessions each stopped and reconnected every ${churnPauseMs} ms: ${changes} calls made ` +
      `${real.length} events: ` +
      Array.from(byType, ([type, count]) => `${type} ${count}`).join(", "),
      ""
    ].join("\n"))
    if (lost > 0 || outOfOrder > 0) process.exitCode = 1
  })

process.stdout.write(`starting a cluster with ${values.nodes} nodes…\n`)
await main()
