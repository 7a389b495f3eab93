/**
 * The lease keeper's side of the wire (LeaseKeeper.ts): what the node's thread and the keeper's thread say to each
 * other, the memory they share, and the keeper thread's program.
 */
import { Duration, Effect, Exit, FiberMap, HashMap, Logger, LogLevel, Redacted, Runtime, Scope } from "effect"
import { parentPort, workerData } from "node:worker_threads"
import { monotonicMillis } from "../ClusterConfig.js"
import { Nats } from "../Nats.js"
import { SHARDS_BUCKET } from "./leaseRecord.js"
import { releaseLease, renewalTimings, renewLease } from "./leaseRenewal.js"

/** Milliseconds on a clock both threads read alike (each thread's own time origin plus its monotonic time). */
export const sharedNow = (): number => performance.timeOrigin + performance.now()

/** How often the node's thread says it is alive. */
export const CHECK_IN_MS = 250

export type ToKeeper =
  | {
    readonly _tag: "Hold"
    readonly nodeId: string
    readonly shard: number
    readonly epoch: number
    readonly revision: number
    readonly acquiredAt: number
  }
  | { readonly _tag: "Release"; readonly nodeId: string; readonly shard: number; readonly epoch: number }
  | { readonly _tag: "Forget"; readonly shard: number; readonly epoch: number }
  | { readonly _tag: "Stop" }

export type FromKeeper =
  | { readonly _tag: "Ready" }
  | { readonly _tag: "Failed"; readonly error: string }
  | { readonly _tag: "Lost"; readonly shard: number; readonly epoch: number; readonly why: string }
  | { readonly _tag: "Released"; readonly shard: number; readonly epoch: number }
  | {
    readonly _tag: "Log"
    readonly level: string
    readonly message: string
    readonly annotations: Record<string, string>
  }

export interface KeeperData {
  readonly natsUrl: string
  readonly name: string
  readonly shards: number
  readonly leaseTtl: number
  readonly nodeTtl: number
  readonly replicas: number
  /** How long the node's thread may go without checking in before renewals stop. */
  readonly stallLimit: number
  readonly shared: SharedArrayBuffer
}

/**
 * The shared memory: the node's check-in counter (bumped every CHECK_IN_MS), then per shard when its lease was last
 * renewed (sharedNow milliseconds; 0 when not held).
 */
export const sharedViews = (shared: SharedArrayBuffer, shards: number) => ({
  checkIns: new Int32Array(shared, 0, 1),
  renewedAt: new Float64Array(shared, 8, shards)
})
export const sharedBytes = (shards: number) => 8 + 8 * shards

const text = (message: unknown): string =>
  Array.isArray(message) ? message.map(text).join(" ") : typeof message === "string" ? message : String(message)

const send = (message: FromKeeper) => parentPort?.postMessage(message)

/** Log lines go to the node's thread, which writes them with its own logger. */
const keeperLogger = Logger.make(({ annotations, logLevel, message }) =>
  send({
    _tag: "Log",
    level: logLevel.label,
    message: text(message),
    annotations: Object.fromEntries(Array.from(HashMap.toEntries(annotations), ([k, v]) => [k, text(v)]))
  })
)

/** The keeper thread: holds and renews leases as the node's thread asks, until told to stop. */
export const runKeeper = Effect.gen(function*() {
  const port = parentPort
  if (port === null) return yield* Effect.dieMessage("the lease keeper runs on a worker thread")
  const data = workerData as KeeperData
  const { checkIns, renewedAt } = sharedViews(data.shared, data.shards)
  const timings = renewalTimings(data.leaseTtl, data.nodeTtl)

  const program = Effect.gen(function*() {
    const nats = yield* Nats
    const bucket = yield* nats.bucket(SHARDS_BUCKET, { history: 1, replicas: data.replicas })
    const fibers = yield* FiberMap.make<number>()

    // The watchdog: the node's thread bumps a counter every CHECK_IN_MS. Ticks that found it unchanged add up to how
    // long it has been silent; a tick that itself ran late (this thread stalled too, the process was stopped) starts
    // the count again, so a stop of the whole process is not blamed on the node's thread.
    let lastCheckIn = Atomics.load(checkIns, 0)
    let silentMs = 0
    let lastTick = performance.now()
    const tick = setInterval(() => {
      const now = performance.now()
      const seen = Atomics.load(checkIns, 0)
      if (seen !== lastCheckIn || now - lastTick > 4 * CHECK_IN_MS) silentMs = 0
      else silentMs += now - lastTick
      lastCheckIn = seen
      lastTick = now
    }, CHECK_IN_MS)
    yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(tick)))
    let silenceLogged = false
    const mayRenew = () => {
      const responsive = silentMs < data.stallLimit
      if (responsive) silenceLogged = false
      return responsive
    }

    let lastLateLog = Number.NEGATIVE_INFINITY
    const hooks = {
      renewed: (shard: number) => (at: number) =>
        Effect.map(monotonicMillis, (now) => {
          renewedAt[shard] = sharedNow() - (now - at)
        }),
      late: (stalledMs: number) =>
        Effect.gen(function*() {
          const now = yield* monotonicMillis
          if (now - lastLateLog <= data.leaseTtl) return
          lastLateLog = now
          yield* Effect.logWarning("leases renewed late: this process was stalled").pipe(
            Effect.annotateLogs({ stalledMs })
          )
        })
    }

    const hold = (message: Extract<ToKeeper, { _tag: "Hold" }>) =>
      Effect.gen(function*() {
        const now = yield* monotonicMillis
        const acquiredAt = now - (sharedNow() - message.acquiredAt)
        const renewal = renewLease(bucket, message.nodeId, timings, { ...message, acquiredAt }, {
          renewed: hooks.renewed(message.shard),
          mayRenew: () => {
            const may = mayRenew()
            if (!may && !silenceLogged) {
              silenceLogged = true
              send({
                _tag: "Log",
                level: "Error",
                message: "the node's event loop has not answered for too long: its leases are no longer renewed",
                annotations: { silentMs: String(Math.round(silentMs)) }
              })
            }
            return may
          },
          late: hooks.late
        }).pipe(
          Effect.catchAll((lost) =>
            Effect.sync(() => send({ _tag: "Lost", shard: lost.shard, epoch: message.epoch, why: lost.why }))
          )
        )
        yield* FiberMap.run(fibers, message.shard, renewal)
      })

    // Messages about one shard are handled in the order they came (a release finishes before the next hold).
    const lanes = new Map<number, Effect.Semaphore>()
    const lane = (shard: number) => {
      let semaphore = lanes.get(shard)
      if (semaphore === undefined) {
        semaphore = Effect.unsafeMakeSemaphore(1)
        lanes.set(shard, semaphore)
      }
      return semaphore
    }
    const handle = (message: Exclude<ToKeeper, { _tag: "Stop" }>): Effect.Effect<void> =>
      lane(message.shard).withPermits(1)(handleInOrder(message))
    const handleInOrder = (message: Exclude<ToKeeper, { _tag: "Stop" }>): Effect.Effect<void> => {
      switch (message._tag) {
        case "Hold":
          return hold(message)
        case "Release":
          return FiberMap.remove(fibers, message.shard).pipe(
            Effect.zipRight(releaseLease(bucket, message.nodeId, message.shard)),
            Effect.ensuring(Effect.sync(() => {
              renewedAt[message.shard] = 0
              send({ _tag: "Released", shard: message.shard, epoch: message.epoch })
            }))
          )
        case "Forget":
          return FiberMap.remove(fibers, message.shard).pipe(
            Effect.ensuring(Effect.sync(() => (renewedAt[message.shard] = 0)))
          )
      }
    }

    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const stopped = yield* Effect.async<void>((resume) => {
      const onMessage = (message: ToKeeper) => {
        if (message._tag === "Stop") {
          // The thread ends once nothing listens any more.
          port.off("message", onMessage)
          resume(Effect.void)
        } else runFork(handle(message))
      }
      port.on("message", onMessage)
      send({ _tag: "Ready" })
      return Effect.sync(() => port.off("message", onMessage))
    })
    return stopped
  })

  const scope = yield* Scope.make()
  const exit = yield* program.pipe(
    Effect.provide(Nats.layer({ url: Redacted.make(data.natsUrl), name: data.name })),
    Scope.extend(scope),
    Effect.exit
  )
  if (Exit.isFailure(exit)) send({ _tag: "Failed", error: String(exit.cause) })
  yield* Scope.close(scope, Exit.void).pipe(Effect.timeout(Duration.seconds(3)), Effect.ignore)
}).pipe(
  Effect.provide(Logger.replace(Logger.defaultLogger, keeperLogger)),
  // The node's thread applies its own minimum level.
  Effect.provide(Logger.minimumLogLevel(LogLevel.Debug))
)
