/**
 * Renews the node's shard leases on a thread of their own, with its own NATS connection.
 *
 * A node holding thousands of sessions stalls its event loop now and then for seconds (a full garbage collection of
 * a multi-gigabyte heap, thousands of logins at once). Renewed from that loop, every lease missed its deadline in
 * such a stall and the node fenced all its shards, which logged every session in again and stalled it once more: a
 * node with 5,000 sessions never finished a restart. The keeper thread renews whatever the node's loop is doing.
 *
 * What keeps this safe is a watchdog: the node's thread checks in every CHECK_IN_MS through shared memory, and the
 * keeper stops renewing once it has not heard from it for STALL_LIMIT × LEASE_TTL, so a node whose loop hangs for
 * good still loses its shards, fenced as before. The node's thread in turn stops a shard's work when the keeper
 * says the lease is lost, or when it sees (in shared memory) that the lease has not been renewed for as long as a
 * renewal may be late; a keeper thread that dies fences every shard.
 *
 * `LeaseKeeper.inProcess` renews on the calling thread instead, with the same renewal code: tests use it to stall
 * the renewals themselves.
 */
import {
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  LogLevel,
  Redacted,
  Runtime,
  Schedule,
  type Scope,
  SynchronizedRef
} from "effect"
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"
import { ClusterConfig, monotonicMillis } from "./ClusterConfig.js"
import {
  CHECK_IN_MS,
  type FromKeeper,
  type KeeperData,
  sharedBytes,
  sharedNow,
  sharedViews,
  type ToKeeper
} from "./internal/leaseKeeperThread.js"
import { SHARDS_BUCKET } from "./internal/leaseRecord.js"
import { LeaseLost, releaseLease, renewalTimings, renewLease } from "./internal/leaseRenewal.js"
import { Nats } from "./Nats.js"
import { NatsError } from "./NatsError.js"
import * as SlowStops from "./SlowStops.js"

export { LeaseLost } from "./internal/leaseRenewal.js"

/** The keeper stops renewing after the node's thread has been silent for this many LEASE_TTLs. */
export const STALL_LIMIT = 2

export interface LeaseToKeep {
  /** This node (the holder the lease names). */
  readonly nodeId: string
  readonly shard: number
  readonly epoch: number
  /** The revision the acquiring write got. */
  readonly revision: number
  /** When the acquiring write was sent (monotonicMillis). */
  readonly acquiredAt: number
}

export interface KeptLease {
  /** Fails when the lease is lost (taken by another node, or fenced); never succeeds. */
  readonly lost: Effect.Effect<never, LeaseLost>
  /** Stops renewing and gives the lease up (nothing when it was lost). */
  readonly release: Effect.Effect<void>
}

export class LeaseKeeper extends Context.Tag("@wacluster/cluster/LeaseKeeper")<LeaseKeeper, {
  /** Renews a lease this node just acquired until `release`; closing the scope stops renewing without releasing. */
  readonly keep: (lease: LeaseToKeep) => Effect.Effect<KeptLease, never, Scope.Scope>
}>() {
  /** A node's keeper. Build it before the node's membership: a node others see must be able to hold shards. */
  static readonly onThread: Layer.Layer<LeaseKeeper, NatsError, Nats | ClusterConfig> = Layer.scoped(
    LeaseKeeper,
    Effect.suspend(() => makeOnThread)
  )

  static readonly inProcess: Layer.Layer<LeaseKeeper, NatsError, Nats | ClusterConfig> = Layer.scoped(
    LeaseKeeper,
    Effect.suspend(() => makeInProcess)
  )
}

/** The worker's entry, through tsx when this code runs as TypeScript (the services do). */
const workerUrl = (): URL => {
  // Bundled (the services run as one file each), the worker's bundle lies beside this one's.
  if (!import.meta.url.endsWith(".ts")) return new URL("./leaseKeeperWorker.mjs", import.meta.url)
  const entry = new URL("./internal/leaseKeeperWorker.ts", import.meta.url)
  // tsx's ES module API (the resolver answers with its CommonJS twin, beside it).
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx/esm/api").replace(/\.cjs$/, ".mjs")).href
  const source = `import { register } from ${JSON.stringify(tsx)}\nregister()\nawait import(${
    JSON.stringify(entry.href)
  })\n`
  return new URL(`data:text/javascript,${encodeURIComponent(source)}`)
}

interface Held {
  readonly epoch: number
  readonly lost: Deferred.Deferred<never, LeaseLost>
  readonly released: Deferred.Deferred<void>
}

interface Thread {
  readonly post: (message: ToKeeper) => void
  readonly exited: Deferred.Deferred<void>
  readonly worker: Worker
}

const makeOnThread = Effect.gen(function*() {
  const config = yield* ClusterConfig
  const nats = yield* Nats
  const leaseTtl = Duration.toMillis(config.leaseTtl)
  const nodeTtl = Duration.toMillis(config.nodeTtl)
  const timings = renewalTimings(leaseTtl, nodeTtl)
  const shared = new SharedArrayBuffer(sharedBytes(config.shards))
  const { checkIns, renewedAt } = sharedViews(shared, config.shards)
  const runFork = Runtime.runFork(yield* Effect.runtime<never>())
  const held = new Map<number, Held>()
  let stopping = false

  const lose = (shard: number, epoch: number | undefined, why: string) => {
    const entry = held.get(shard)
    if (entry === undefined || (epoch !== undefined && entry.epoch !== epoch)) return
    Deferred.unsafeDone(entry.lost, Exit.fail(new LeaseLost({ shard, why })))
  }
  const loseAll = (why: string) => {
    for (const [shard, entry] of held) {
      lose(shard, undefined, why)
      Deferred.unsafeDone(entry.released, Exit.void)
    }
  }

  const data: KeeperData = {
    natsUrl: Redacted.value(nats.config.url),
    name: `${nats.config.name}-leases`,
    shards: config.shards,
    leaseTtl,
    nodeTtl,
    replicas: config.replicas,
    stallLimit: STALL_LIMIT * leaseTtl,
    shared
  }

  /** Starts a keeper thread and waits until it is connected to NATS. */
  const spawn = Effect.gen(function*() {
    const ready = yield* Deferred.make<void, NatsError>()
    const exited = yield* Deferred.make<void>()
    const worker = new Worker(workerUrl(), {
      workerData: data,
      name: "lease-keeper",
      // None of the process's own options or environment (its configuration comes in workerData): NODE_OPTIONS may
      // preload TypeScript (a profiler, a probe) before the worker has registered tsx, and that fails the thread.
      execArgv: [],
      env: {}
    })
    worker.on("message", (message: FromKeeper) => {
      switch (message._tag) {
        case "Ready":
          return Deferred.unsafeDone(ready, Exit.void)
        case "Failed":
          return Deferred.unsafeDone(
            ready,
            Exit.fail(new NatsError({ operation: "lease keeper", cause: message.error }))
          )
        case "Lost":
          return lose(message.shard, message.epoch, message.why)
        case "Released": {
          const entry = held.get(message.shard)
          if (entry !== undefined && entry.epoch === message.epoch) Deferred.unsafeDone(entry.released, Exit.void)
          return
        }
        case "Log":
          runFork(
            Effect.logWithLevel(LogLevel.fromLiteral(message.level as LogLevel.Literal), message.message).pipe(
              Effect.annotateLogs({ ...message.annotations, thread: "lease-keeper" })
            )
          )
          return
      }
    })
    worker.on("error", (error) => {
      runFork(Effect.logError("the lease keeper thread failed", error))
    })
    worker.on("exit", (code) => {
      Deferred.unsafeDone(exited, Exit.void)
      Deferred.unsafeDone(ready, Exit.fail(new NatsError({ operation: "lease keeper", cause: `exited ${code}` })))
      if (stopping) return
      // Nobody renews the leases any more: every shard's work stops now, before their leases run out.
      loseAll("fenced: the lease keeper thread stopped")
      runFork(
        Effect.logError("the lease keeper thread stopped; its shards are fenced").pipe(
          Effect.annotateLogs({ code })
        )
      )
    })
    const thread: Thread = { post: (message) => worker.postMessage(message), exited, worker }
    yield* Deferred.await(ready).pipe(
      Effect.timeoutFail({
        duration: Duration.seconds(60),
        onTimeout: () => new NatsError({ operation: "lease keeper", cause: "not ready within 60 s" })
      }),
      Effect.tapError(() => Effect.promise(() => worker.terminate()))
    )
    return thread
  })

  const stop = (thread: Thread) =>
    Effect.gen(function*() {
      thread.post({ _tag: "Stop" })
      yield* Deferred.await(thread.exited).pipe(Effect.timeout(Duration.seconds(3)), Effect.ignore)
      yield* Effect.promise(() => thread.worker.terminate())
    })

  const current = yield* SynchronizedRef.make<Thread>(yield* spawn)
  yield* Effect.addFinalizer(() =>
    Effect.flatMap(SynchronizedRef.get(current), (thread) => {
      stopping = true
      return stop(thread).pipe(SlowStops.track("the lease keeper thread"))
    })
  )
  /** The running keeper thread; a new one when the last died. */
  const thread = SynchronizedRef.updateAndGetEffect(
    current,
    (running) => Deferred.isDone(running.exited).pipe(Effect.flatMap((dead) => dead ? spawn : Effect.succeed(running)))
  )

  // The node's thread says it is alive (the watchdog's input).
  yield* Effect.sync(() => Atomics.add(checkIns, 0, 1)).pipe(
    Effect.repeat(Schedule.spaced(Duration.millis(CHECK_IN_MS))),
    Effect.forkScoped
  )
  // A lease the keeper has not renewed for as long as it would keep one itself is fenced here even if the keeper
  // said nothing (it is stuck): others may take it soon.
  const silentLimit = Math.max(timings.fenceAfter, timings.lateLimit)
  yield* Effect.sync(() => {
    const now = sharedNow()
    for (const [shard, entry] of held) {
      if (now - (renewedAt[shard] ?? 0) >= silentLimit) {
        lose(shard, entry.epoch, "fenced: the lease keeper did not renew the lease in time")
      }
    }
  }).pipe(Effect.repeat(Schedule.spaced(Duration.millis(timings.renewEvery))), Effect.forkScoped)

  const keep = (lease: LeaseToKeep) =>
    Effect.gen(function*() {
      const entry: Held = {
        epoch: lease.epoch,
        lost: yield* Deferred.make<never, LeaseLost>(),
        released: yield* Deferred.make<void>()
      }
      const running = yield* thread.pipe(
        Effect.tapError((error) =>
          Deferred.fail(entry.lost, new LeaseLost({ shard: lease.shard, why: error.message }))
        ),
        Effect.option
      )
      held.set(lease.shard, entry)
      const acquiredAt = sharedNow() - ((yield* monotonicMillis) - lease.acquiredAt)
      renewedAt[lease.shard] = acquiredAt
      let done = false
      const forget = Effect.sync(() => {
        if (held.get(lease.shard) === entry) held.delete(lease.shard)
      })
      if (running._tag === "Some") {
        running.value.post({ _tag: "Hold", ...lease, acquiredAt })
      }
      yield* Effect.addFinalizer(() =>
        done ? Effect.void : Effect.zipRight(
          Effect.sync(() => {
            done = true
            if (running._tag === "Some") running.value.post({ _tag: "Forget", shard: lease.shard, epoch: lease.epoch })
          }),
          forget
        )
      )
      const release = Effect.suspend(() => {
        if (done || running._tag === "None") return Effect.void
        done = true
        running.value.post({ _tag: "Release", nodeId: lease.nodeId, shard: lease.shard, epoch: lease.epoch })
        return Deferred.await(entry.released).pipe(
          Effect.timeout(config.leaseTtl),
          Effect.ignore,
          Effect.zipRight(forget)
        )
      })
      return { lost: Deferred.await(entry.lost), release }
    })

  return { keep }
})

const makeInProcess = Effect.gen(function*() {
  const config = yield* ClusterConfig
  const nats = yield* Nats
  const bucket = yield* nats.bucket(SHARDS_BUCKET, { history: 1, replicas: config.replicas })
  const leaseTtl = Duration.toMillis(config.leaseTtl)
  const timings = renewalTimings(leaseTtl, Duration.toMillis(config.nodeTtl))
  let lastLateLog = Number.NEGATIVE_INFINITY
  const late = (stalledMs: number) =>
    Effect.gen(function*() {
      const now = yield* monotonicMillis
      if (now - lastLateLog <= leaseTtl) return
      lastLateLog = now
      yield* Effect.logWarning("leases renewed late: this process was stalled").pipe(Effect.annotateLogs({ stalledMs }))
    })

  const keep = (lease: LeaseToKeep) =>
    Effect.gen(function*() {
      const lost = yield* Deferred.make<never, LeaseLost>()
      const renewal = yield* renewLease(bucket, lease.nodeId, timings, lease, {
        renewed: () => Effect.void,
        mayRenew: () => true,
        late
      }).pipe(Effect.catchAll((error) => Deferred.fail(lost, error)), Effect.forkScoped)
      const release = Fiber.interrupt(renewal).pipe(
        Effect.zipRight(Deferred.isDone(lost)),
        Effect.flatMap((wasLost) => wasLost ? Effect.void : releaseLease(bucket, lease.nodeId, lease.shard))
      )
      return { lost: Deferred.await(lost), release }
    })

  return { keep }
})
