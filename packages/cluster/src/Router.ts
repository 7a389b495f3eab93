/**
 * Gateway side of `wa.rpc.<shard>`: sends a session command to whichever node owns the session's shard.
 * When nobody answers (no owner yet, a handover in progress) or the receiver is not the owner any more,
 * it retries with a short backoff within a time budget, then gives up with `OwnerUnavailable`.
 */
import type { SessionId } from "@wacluster/domain/Ids"
import { rpcSubject, type SessionCommand, slowCommandTimeout } from "@wacluster/domain/Protocol"
import { decodeReply, encodeCommand } from "@wacluster/domain/ProtocolJson"
import { shardOf } from "@wacluster/domain/Shard"
import { withHotSpan } from "@wacluster/domain/Spans"
import { Config, Context, Data, Duration, Effect, Exit, Layer, Schedule, type Schema } from "effect"
import { ClusterConfig, monotonicMillis } from "./ClusterConfig.js"
import { Nats } from "./Nats.js"

/** No owner answered within the routing budget. */
export class OwnerUnavailable extends Data.TaggedError("OwnerUnavailable")<{
  readonly sessionId: SessionId
  readonly shard: number
  readonly attempts: number
  readonly lastError: string
}> {}

export interface RouterOptions {
  /** How long one request may wait for its reply. */
  readonly requestTimeout: Duration.Duration
  /** How long a command may keep retrying before the caller gets `OwnerUnavailable`. */
  readonly budget: Duration.Duration
}

type Command = typeof SessionCommand.Type
type Success<C> = Schema.WithResult.Success<C>
type Failure<C> = Schema.WithResult.Failure<C>

class Retryable extends Data.TaggedError("Retryable")<{ readonly reason: string }> {}

/**
 * Attempts are 25 ms apart after the first, then 50 ms, doubling up to 500 ms. The first attempt runs without the
 * retry machinery (about 19 µs per command even when nothing is retried), which starts only once that attempt failed.
 */
const FIRST_RETRY_AFTER = Duration.millis(25)
const retrySchedule = Schedule.exponential("50 millis", 2).pipe(Schedule.either(Schedule.spaced("500 millis")))
const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

export class Router extends Context.Tag("@wacluster/cluster/Router")<Router, {
  readonly send: <C extends Command>(command: C) => Effect.Effect<Success<C>, Failure<C> | OwnerUnavailable>
}>() {
  static readonly make = Effect.fn("Router.make")(function*(options: RouterOptions) {
    const nats = yield* Nats
    const { shards } = yield* ClusterConfig

    const send = <C extends Command>(command: C) => {
      const shard = shardOf(command.sessionId, shards)
      const subject = rpcSubject(shard)
      const payload = textEncoder.encode(encodeCommand(command))
      // A slow command gets its own time (and a little more for the way there and back) before it is sent again.
      const slow = slowCommandTimeout(command)
      const requestTimeout = slow === undefined
        ? options.requestTimeout
        : Duration.max(options.requestTimeout, Duration.sum(slow, Duration.seconds(2)))
      const budget = Duration.toMillis(Duration.max(options.budget, requestTimeout))
      let attempts = 0
      let lastError = "none"
      const once = Effect.gen(function*() {
        attempts++
        const reply = yield* nats.request(subject, payload, requestTimeout).pipe(
          Effect.catchTags({
            NoResponders: () => new Retryable({ reason: "no owner is serving the shard" }),
            RequestTimeout: () => new Retryable({ reason: "the owner did not answer in time" }),
            NatsError: (error) => new Retryable({ reason: `NATS: ${String(error.cause)}` })
          })
        )
        const exit = yield* decodeReply(command, textDecoder.decode(reply)).pipe(Effect.orDie)
        if (Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "NotOwner") {
          return yield* new Retryable({ reason: "the receiver no longer owns the shard" })
        }
        return exit
      }).pipe(Effect.tapError((error) => Effect.sync(() => lastError = error.reason)))

      return Effect.gen(function*() {
        const startedAt = yield* monotonicMillis
        const withinBudget = Effect.map(monotonicMillis, (now) => now - startedAt < budget)
        const exit = yield* once.pipe(
          Effect.catchTag("Retryable", (error) =>
            Effect.flatMap(withinBudget, (within) =>
              within
                ? Effect.zipRight(
                  Effect.sleep(FIRST_RETRY_AFTER),
                  Effect.retry(once, { schedule: retrySchedule, while: () => withinBudget })
                )
                : Effect.fail(error))),
          Effect.catchTag(
            "Retryable",
            () => new OwnerUnavailable({ sessionId: command.sessionId, shard, attempts, lastError })
          )
        )
        return (yield* exit) as Success<C>
      }).pipe(
        withHotSpan("Router.send", { attributes: { command: command._tag, shard } })
      ) as Effect.Effect<Success<C>, Failure<C> | OwnerUnavailable>
    }

    return { send }
  })

  static readonly layer = (options: RouterOptions) => Layer.effect(Router, Router.make(options))

  static readonly layerConfig = Layer.unwrapEffect(
    Effect.map(
      Config.all({
        requestTimeout: Config.duration("ROUTER_REQUEST_TIMEOUT").pipe(
          Config.withDefault(Duration.seconds(2)),
          Config.withDescription("How long one routed request waits for the owner's reply")
        ),
        budget: Config.duration("ROUTER_BUDGET").pipe(
          Config.withDefault(Duration.seconds(8)),
          Config.withDescription("How long a routed command keeps retrying before the gateway answers 503")
        )
      }),
      Router.layer
    )
  )
}
