/**
 * Gateway side of `wa.rpc.<shard>`: sends a session command to whichever node owns the session's shard.
 * When nobody answers (no owner yet, a handover in progress) or the receiver is not the owner any more,
 * it retries with a short backoff within a time budget, then gives up with `OwnerUnavailable`. `sendThen` is the
 * same for callers outside Effect, and answers a queued text without making a fiber for it.
 */
import type { SessionId } from "@wacluster/domain/Ids"
import { rpcSubject, type SessionCommand, slowCommandTimeout } from "@wacluster/domain/Protocol"
import { decodeReply, encodeCommand, readReply } from "@wacluster/domain/ProtocolJson"
import { shardOf } from "@wacluster/domain/Shard"
import { withHotSpan } from "@wacluster/domain/Spans"
import { Config, Context, Data, Duration, Effect, Exit, FiberRef, Layer, Runtime, Schedule, type Schema } from "effect"
import { ClusterConfig, monotonicMillis } from "./ClusterConfig.js"
import { Nats, requestError } from "./Nats.js"
import type { NatsError, NoResponders, RequestTimeout } from "./NatsError.js"

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
  /**
   * `send` for a caller outside Effect (the gateway's send fast lane): the first attempt is a plain NATS request,
   * and a queued text's answer reaches `done` without a fiber made for it. Anything else (another command's
   * answer, a failure, no owner, a timeout) goes on as `send` goes on after its first attempt, on a fiber.
   */
  readonly sendThen: <C extends Command>(
    command: C,
    done: (exit: Exit.Exit<Success<C>, Failure<C> | OwnerUnavailable>) => void
  ) => void
}>() {
  static readonly make = Effect.fn("Router.make")(function*(options: RouterOptions) {
    const nats = yield* Nats
    const { shards } = yield* ClusterConfig
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const clock = yield* Effect.clock
    // With tracing on, every send goes the Effect way, which has the span.
    const tracing = yield* FiberRef.get(FiberRef.currentTracerEnabled)

    /** Where a command goes and how long it may take; `attempts` and `lastError` for OwnerUnavailable. */
    const routeOf = (command: Command) => {
      const shard = shardOf(command.sessionId, shards)
      // A slow command gets its own time (and a little more for the way there and back) before it is sent again.
      const slow = slowCommandTimeout(command)
      const requestTimeout = slow === undefined
        ? options.requestTimeout
        : Duration.max(options.requestTimeout, Duration.sum(slow, Duration.seconds(2)))
      return {
        command,
        shard,
        subject: rpcSubject(shard),
        payload: textEncoder.encode(encodeCommand(command)),
        requestTimeout,
        budget: Duration.toMillis(Duration.max(options.budget, requestTimeout)),
        attempts: 0,
        lastError: "none"
      }
    }
    type Route = ReturnType<typeof routeOf>

    const retryable = (error: NatsError | NoResponders | RequestTimeout) => {
      switch (error._tag) {
        case "NoResponders":
          return new Retryable({ reason: "no owner is serving the shard" })
        case "RequestTimeout":
          return new Retryable({ reason: "the owner did not answer in time" })
        case "NatsError":
          return new Retryable({ reason: `NATS: ${String(error.cause)}` })
      }
    }

    /** The command's answer from the owner's reply; a receiver that no longer owns the shard is asked again. */
    const judge = (route: Route, reply: string) =>
      Effect.flatMap(
        Effect.orDie(decodeReply(route.command, reply)),
        (exit) =>
          Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "NotOwner"
            ? Effect.fail(new Retryable({ reason: "the receiver no longer owns the shard" }))
            : Effect.succeed(exit)
      )

    const attempt = (route: Route) =>
      Effect.suspend(() => {
        route.attempts++
        return nats.request(route.subject, route.payload, route.requestTimeout).pipe(
          Effect.mapError(retryable),
          Effect.flatMap((reply) => judge(route, textDecoder.decode(reply)))
        )
      })

    /** What follows a first attempt (`first`, begun at `startedAt`): retries within the budget, then the answer. */
    const settle = <C extends Command>(route: Route, startedAt: number, first: Effect.Effect<unknown, Retryable>) => {
      const withinBudget = Effect.map(monotonicMillis, (now) => now - startedAt < route.budget)
      return first.pipe(
        Effect.catchTag("Retryable", (error) =>
          Effect.flatMap(withinBudget, (within) =>
            within
              ? Effect.zipRight(
                Effect.sleep(FIRST_RETRY_AFTER),
                Effect.retry(attempt(route), { schedule: retrySchedule, while: () => withinBudget })
              )
              : Effect.fail(error))),
        Effect.tapError((error) => Effect.sync(() => route.lastError = error.reason)),
        Effect.catchTag("Retryable", () =>
          new OwnerUnavailable({
            sessionId: route.command.sessionId,
            shard: route.shard,
            attempts: route.attempts,
            lastError: route.lastError
          })),
        Effect.flatMap((exit) => exit as Exit.Exit<Success<C>, Failure<C>>),
        withHotSpan("Router.send", { attributes: { command: route.command._tag, shard: route.shard } })
      ) as Effect.Effect<Success<C>, Failure<C> | OwnerUnavailable>
    }

    const send = <C extends Command>(command: C) =>
      Effect.suspend(() => {
        const route = routeOf(command)
        return Effect.flatMap(monotonicMillis, (startedAt) => settle<C>(route, startedAt, attempt(route)))
      })

    const sendThen = <C extends Command>(
      command: C,
      done: (exit: Exit.Exit<Success<C>, Failure<C> | OwnerUnavailable>) => void
    ) => {
      if (tracing) return void runFork(send(command)).addObserver(done)
      const route = routeOf(command)
      // The budget counts on the clock `send` reads (monotonicMillis).
      const startedAt = Number(clock.unsafeCurrentTimeNanos() / 1_000_000n)
      const goOn = (first: Effect.Effect<unknown, Retryable>) =>
        runFork(settle<C>(route, startedAt, first)).addObserver(done)
      route.attempts++
      nats.connection.request(route.subject, route.payload, { timeout: Duration.toMillis(route.requestTimeout) })
        .then(
          (msg) => {
            const reply = textDecoder.decode(msg.data)
            const read = readReply(command, reply)
            if (read !== undefined) done(read as Exit.Exit<Success<C>, Failure<C>>)
            else goOn(judge(route, reply))
          },
          (cause: unknown) => goOn(Effect.fail(retryable(requestError(route.subject, cause))))
        )
    }

    return { send, sendThen }
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
