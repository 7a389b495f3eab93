import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { ClusterConfig } from "@wacluster/cluster/ClusterConfig"
import { EventStream } from "@wacluster/cluster/EventStream"
import { LeaseKeeper } from "@wacluster/cluster/LeaseKeeper"
import { Membership } from "@wacluster/cluster/Membership"
import { Nats } from "@wacluster/cluster/Nats"
import { Router } from "@wacluster/cluster/Router"
import { EpochFloor, ShardLeases } from "@wacluster/cluster/ShardLeases"
import { makeSessionId, NodeId, type SessionId } from "@wacluster/domain/Ids"
import { EnsureStarted, GetStatus, QueueText, rpcSubject, type SessionCommand } from "@wacluster/domain/Protocol"
import { decodeReply, SessionCommandJson } from "@wacluster/domain/ProtocolJson"
import { shardOf } from "@wacluster/domain/Shard"
import * as NatsServer from "@wacluster/infra/NatsServer"
import { StoreError } from "@wacluster/store/Errors"
import { Sessions } from "@wacluster/store/Sessions"
import { seedTenant, storeLayer } from "@wacluster/store/test/support"
import * as InProcessDriver from "@wacluster/whatsapp/InProcessDriver"
import { ProxyConfig } from "@wacluster/whatsapp/ProxyConfig"
import { WhatsAppDriver } from "@wacluster/whatsapp/WhatsAppDriver"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Redacted, Schema } from "effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { defaultBackoff } from "../src/Backoff.js"
import { defaultIntensity } from "../src/RestartIntensity.js"
import * as SessionHost from "../src/SessionHost.js"

const SHARDS = 8
const config = ClusterConfig.layerWith({
  shards: SHARDS,
  heartbeat: Duration.millis(100),
  nodeTtl: Duration.millis(500),
  leaseTtl: Duration.millis(900)
})

/** Session ids whose driver connection dies with a defect, to prove one actor's crash stays its own. */
const cursed = new Set<string>()
let cursedConnects = 0
/** Every connect per session, to check that a session never gets two actors. */
const connects = new Map<string, number>()

/** The in-process driver, except that connecting a cursed session is a defect. */
const FlakyDriver = Layer.effect(
  WhatsAppDriver,
  Effect.map(WhatsAppDriver, (driver) =>
    WhatsAppDriver.of({
      ...driver,
      connect: (options) =>
        Effect.sync(() => connects.set(options.sessionId, (connects.get(options.sessionId) ?? 0) + 1)).pipe(
          Effect.zipRight(
            cursed.has(options.sessionId)
              ? Effect.sync(() => cursedConnects++).pipe(Effect.zipRight(Effect.dieMessage("boom: driver bug")))
              : driver.connect(options)
          )
        )
    }))
).pipe(Layer.provide(InProcessDriver.layer()), Layer.merge(ProxyConfig.layerWith({})))

/** Session ids whose row the node cannot read: Postgres failing under that one read. */
const unreadable = new Set<string>()

/** The real store, except that reading an unreadable session fails as a Postgres outage does. */
const FlakySessions = Layer.effect(
  Sessions,
  Effect.map(Sessions, (sessions) =>
    Sessions.of({
      ...sessions,
      findById: (id) =>
        unreadable.has(id)
          ? Effect.fail(new StoreError({ message: "connection terminated unexpectedly", cause: null }))
          : sessions.findById(id)
    }))
)

const natsLayer = Layer.unwrapScoped(Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), "wacluster-nats-"))),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )
  const server = yield* NatsServer.start({ dataDir: dir })
  return Nats.layer({ url: Redacted.make(server.url), name: "test" })
}))

const NodeLayer = ShardLeases.layer.pipe(
  Layer.provide(EpochFloor.none),
  Layer.provideMerge(SessionHost.layer({
    mailboxCapacity: 16,
    backoff: defaultBackoff,
    intensity: defaultIntensity,
    // Low, so the tests that start many sessions at once go through the gate.
    connectConcurrency: 2,
    persistEvery: Duration.seconds(30),
    persistIdleEvery: Duration.minutes(5),
    sendInterval: Duration.millis(10),
    queueMaxAge: Duration.hours(1),
    rateLimits: { requestsPerMinute: 6_000, messagesPerHour: 10_000 },
    connectLagLimit: Duration.millis(300),
    connectLagMaxWait: Duration.seconds(5),
    askTimeout: Duration.seconds(2),
    rescanEvery: Duration.seconds(1)
  })),
  Layer.provideMerge(Membership.layer({ nodeId: NodeId.make("node-1"), version: "test" })),
  Layer.provide(LeaseKeeper.onThread),
  Layer.provide(EventStream.layerConfig),
  Layer.provide(FlakyDriver),
  // As the node runs: a running session's queued texts are answered without a fiber (none with tracing on).
  Layer.provide(Layer.setTracerEnabled(false))
)

const TestLayer = Layer.mergeAll(
  NodeLayer,
  Router.layer({ requestTimeout: Duration.seconds(1), budget: Duration.seconds(5) })
).pipe(
  Layer.provideMerge(natsLayer),
  Layer.provideMerge(FlakySessions),
  Layer.provideMerge(storeLayer("session_host")),
  Layer.provideMerge(config)
)

const createSession = Effect.gen(function*() {
  const tenant = yield* seedTenant()
  const sessions = yield* Sessions
  const id: SessionId = yield* makeSessionId
  return yield* sessions.create({
    id,
    tenantId: tenant.id,
    name: "Support",
    city: "jakarta",
    shard: shardOf(id, SHARDS)
  })
})

/**
 * Holds the shard's fence row in a transaction of its own, so the actor's write of a text waits behind it; the
 * effect it returns lets go.
 */
const holdFence = (shard: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const locked = yield* Deferred.make<void>()
    const release = yield* Deferred.make<void>()
    const holder = yield* sql.withTransaction(
      Effect.zipRight(
        sql`SELECT shard FROM shard_fences WHERE shard = ${shard} FOR UPDATE`,
        Effect.zipRight(Deferred.succeed(locked, undefined), Deferred.await(release))
      )
    ).pipe(Effect.fork)
    yield* Deferred.await(locked)
    return Effect.zipRight(Deferred.succeed(release, undefined), Fiber.join(holder))
  })

/** A command straight to its shard's owner, as a gateway sends it (waiting up to 10 s): the reply, and how long. */
const askOwner = (shard: number, command: SessionCommand) =>
  Effect.gen(function*() {
    const started = performance.now()
    const reply = yield* (yield* Nats).request(
      rpcSubject(shard),
      new TextEncoder().encode(Schema.encodeSync(SessionCommandJson)(command)),
      "10 seconds"
    )
    const exit = yield* decodeReply(command, new TextDecoder().decode(reply))
    return { exit, waited: performance.now() - started }
  })

layer(TestLayer, { timeout: 60_000, excludeTestServices: true })("SessionHost", (it) => {
  it.effect("routes status requests to the owner's actor, starting it on demand", () =>
    Effect.gen(function*() {
      const router = yield* Router
      const session = yield* createSession
      const view = yield* router.send(new GetStatus({ sessionId: session.id }))
      expect(view.sessionId).toBe(session.id)
      expect(view.status).toBe("connecting")
      expect(view.metrics).toEqual({ messagesSent: 0, messagesReceived: 0, uptime: 0 })
      yield* router.send(new EnsureStarted({ sessionId: session.id }))
    }))

  it.effect("starts one actor, never two, when many first commands for a new session arrive at once", () =>
    Effect.gen(function*() {
      const router = yield* Router
      const session = yield* createSession
      const views = yield* Effect.forEach(
        Array.from(
          { length: 12 },
          (_, i) =>
            i % 2 === 0 ? router.send(new GetStatus({ sessionId: session.id })) : router.send(
              new EnsureStarted({ sessionId: session.id })
            )
        ),
        (send) => send,
        { concurrency: "unbounded" }
      )
      expect(views).toHaveLength(12)
      yield* Effect.sleep("300 millis")
      expect(connects.get(session.id)).toBe(1)
    }))

  it.effect("answers 'unknown' for a session the owner does not have", () =>
    Effect.gen(function*() {
      const router = yield* Router
      const session = yield* createSession
      yield* (yield* Sessions).delete(session.id)
      const error = yield* Effect.flip(router.send(new GetStatus({ sessionId: session.id })))
      expect(error._tag).toBe("SessionUnknown")
    }))

  it.effect("answers 'storage unavailable' (retryable), not a defect, when it cannot read the session", () =>
    Effect.gen(function*() {
      const router = yield* Router
      const session = yield* createSession
      unreadable.add(session.id)
      const error = yield* Effect.flip(router.send(new EnsureStarted({ sessionId: session.id })))
      expect(error._tag).toBe("StorageUnavailable")
      // Once Postgres answers again, so does the session.
      unreadable.delete(session.id)
      const view = yield* router.send(new GetStatus({ sessionId: session.id }))
      expect(view.sessionId).toBe(session.id)
    }))

  it.effect("answers 'busy' for a command its actor has not answered within the ask timeout, then goes on", () =>
    Effect.gen(function*() {
      const router = yield* Router
      const sql = yield* SqlClient.SqlClient
      const session = yield* createSession
      yield* router.send(new EnsureStarted({ sessionId: session.id }))
      const release = yield* holdFence(session.shard)
      const command = new QueueText({
        sessionId: session.id,
        to: "6281234567890@s.whatsapp.net",
        text: "waits for Postgres",
        idempotencyKey: "client:ask-timeout"
      })
      // Straight to the owner, waiting longer than its ask timeout (2 s here), as a gateway would.
      const { exit, waited } = yield* askOwner(session.shard, command)
      expect(Exit.isFailure(exit) && Cause.failureOption(exit.cause).pipe(Option.map((e) => e._tag))).toEqual(
        Option.some("SessionBusy")
      )
      expect(waited).toBeGreaterThanOrEqual(1_900)
      expect(waited).toBeLessThan(4_000)
      // Postgres lets go: the text is queued once, and a repeat of the command gets it.
      yield* release
      const repeated = yield* router.send(command)
      expect(repeated.status).toBe("queued")
      const [count] = yield* sql<
        { n: number }
      >`SELECT count(*)::int AS n FROM messages WHERE session_id = ${session.id}`
      expect(count?.n).toBe(1)
    }))

  it.effect("answers 'busy' at once for a text that finds its actor's mailbox full; the texts it took are queued", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const session = yield* createSession
      yield* (yield* Router).send(new EnsureStarted({ sessionId: session.id }))
      const release = yield* holdFence(session.shard)
      // One text the actor is writing, 16 in its mailbox (its capacity here), and four more.
      const ask = (i: number) => {
        const command = new QueueText({
          sessionId: session.id,
          to: "6281234567890@s.whatsapp.net",
          text: `text ${i}`,
          idempotencyKey: `client:full-${i}`
        })
        return Effect.map(askOwner(session.shard, command), ({ exit, waited }) => ({
          i,
          waited,
          outcome: Exit.isSuccess(exit)
            ? "queued"
            : Cause.failureOption(exit.cause).pipe(Option.map((e) => e._tag), Option.getOrElse(() => "defect"))
        }))
      }
      const first = yield* Effect.fork(ask(0))
      yield* Effect.sleep("200 millis")
      const rest = yield* Effect.fork(
        Effect.forEach(Array.from({ length: 20 }, (_, i) => i + 1), ask, { concurrency: "unbounded" })
      )
      yield* Effect.sleep("500 millis")
      yield* release
      const answers = [yield* Fiber.join(first), ...(yield* Fiber.join(rest))]
      const busy = answers.filter((a) => a.outcome === "SessionBusy")
      // Refused by the full mailbox, not after the ask timeout (2 s here).
      expect(busy.map((a) => a.i)).toEqual([17, 18, 19, 20])
      for (const answer of busy) expect(answer.waited).toBeLessThan(1_000)
      expect(answers.filter((a) => a.outcome === "queued").map((a) => a.i)).toEqual(
        Array.from({ length: 17 }, (_, i) => i)
      )
      const rows = yield* sql<{ body: { text: string } }>`SELECT body FROM messages
        WHERE session_id = ${session.id} ORDER BY seq`
      expect(rows.map((row) => row.body.text)).toEqual(Array.from({ length: 17 }, (_, i) => `text ${i}`))
    }))

  it.effect("starts the sessions of a shard whose desired state is running, without being asked", () =>
    Effect.gen(function*() {
      const host = yield* SessionHost.SessionHost
      const before = [...(yield* host.running).values()].reduce((a, b) => a + b, 0)
      yield* createSession
      yield* createSession
      // The periodic rescan (every second here) finds them.
      for (let i = 0; i < 100; i++) {
        const now = [...(yield* host.running).values()].reduce((a, b) => a + b, 0)
        if (now >= before + 2) return
        yield* Effect.sleep("50 millis")
      }
      return yield* Effect.dieMessage("the new sessions were never started")
    }))

  it.effect("restarts an actor that hit a defect, alone: the other sessions keep answering", () =>
    Effect.gen(function*() {
      const router = yield* Router
      const healthy = yield* createSession
      const broken = yield* createSession
      cursed.add(broken.id)
      yield* router.send(new EnsureStarted({ sessionId: broken.id }))
      for (let i = 0; i < 10; i++) {
        const view = yield* router.send(new GetStatus({ sessionId: healthy.id }))
        expect(view.status).toBe("connecting")
        yield* Effect.sleep("200 millis")
      }
      // Supervision restarted the broken actor with backoff (1 s, 2 s, …): a few times, not a spin.
      expect(cursedConnects).toBeGreaterThanOrEqual(2)
      expect(cursedConnects).toBeLessThanOrEqual(5)
    }))
})
