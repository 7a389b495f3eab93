import { expect, layer } from "@effect/vitest"
import { MessageId, SessionId } from "@wacluster/domain/Ids"
import {
  AcceptedMessage,
  GetStatus,
  NotOwner,
  QueueText,
  RateLimited,
  rpcSubject,
  type SessionCommand,
  SessionStatusView,
  StatusMetrics
} from "@wacluster/domain/Protocol"
import { encodeReply, SessionCommandJson } from "@wacluster/domain/ProtocolJson"
import { ShardNumber, shardOf } from "@wacluster/domain/Shard"
import { DateTime, Duration, Effect, Exit, Layer, Redacted, Schema, Scope, Tracer } from "effect"
import { ClusterConfig } from "../src/ClusterConfig.js"
import { Nats } from "../src/Nats.js"
import { Router } from "../src/Router.js"
import { privateNats } from "./support.js"

const SHARDS = 16
const sessionId = SessionId.make("sess_routerTest0000000000")
const shard = shardOf(sessionId, SHARDS)
const view = new SessionStatusView({
  sessionId,
  status: "connecting",
  connectedAt: null,
  health: "degraded",
  metrics: new StatusMetrics({ messagesSent: 0, messagesReceived: 0, uptime: 0 })
})
const decodeCommand = Schema.decodeUnknown(SessionCommandJson)

const accepted = new AcceptedMessage({
  messageId: MessageId.make("msg_0000000000000000000R"),
  status: "queued",
  createdAt: DateTime.unsafeMake("2026-12-07T03:00:00.000Z")
})
const limited = new RateLimited({
  sessionId,
  kind: "messages",
  scope: "session",
  limit: 10,
  windowSeconds: 3600,
  retryAfterMs: 1000,
  resetMs: 360_000
})
const queueText = new QueueText({ sessionId, to: "6281234567890@s.whatsapp.net", text: "hi", idempotencyKey: "k" })

/**
 * Answers the shard's subject: `NotOwner` for the first `refusals` requests, then the status (GetStatus), or
 * `queued` as given (QueueText).
 */
const owner = (refusals: number, queued: Exit.Exit<AcceptedMessage, RateLimited> = Exit.succeed(accepted)) =>
  Effect.gen(function*() {
    const nats = yield* Nats
    let seen = 0
    yield* nats.serve(rpcSubject(shard), (payload) =>
      Effect.gen(function*() {
        const command = yield* decodeCommand(new TextDecoder().decode(payload))
        seen++
        const exit = seen <= refusals
          ? Exit.fail(new NotOwner({ shard: ShardNumber.make(shard) }))
          : command._tag === "QueueText"
          ? queued
          : Exit.succeed(view)
        return new TextEncoder().encode(yield* encodeReply(command, exit))
      }).pipe(Effect.orDie))
    return { seen: () => seen }
  })

/** Both ways of sending: `send`, and `sendThen` (the gateway's fast lane) with its callback made an Effect. */
const ways = {
  send: <C extends SessionCommand>(command: C) => Effect.flatMap(Router, (router) => router.send(command)),
  sendThen: <C extends SessionCommand>(command: C) =>
    Effect.flatMap(Router, (router) =>
      Effect.async<
        Effect.Effect.Success<ReturnType<typeof router.send<C>>>,
        Effect.Effect.Error<ReturnType<typeof router.send<C>>>
      >((resume) => router.sendThen(command, (exit) => resume(exit))))
}

const options = { requestTimeout: Duration.millis(300), budget: Duration.seconds(1) }

// Tracing off, as the services run: sendThen answers a queued text without a fiber only then.
const TestLayer = Router.layer(options).pipe(
  Layer.provide(Layer.setTracerEnabled(false)),
  Layer.provideMerge(
    Layer.unwrapScoped(
      Effect.map(privateNats(), (server) => Nats.layer({ url: Redacted.make(server.url), name: "router-test" }))
    )
  ),
  Layer.provideMerge(ClusterConfig.layerWith({ shards: SHARDS }))
)

layer(TestLayer, { timeout: 30_000, excludeTestServices: true })("Router", (it) => {
  for (const [way, sendOf] of Object.entries(ways)) {
    it.effect(`${way}: delivers a command to the shard's owner and returns its typed answer`, () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        yield* owner(0).pipe(Scope.extend(scope))
        const answer = yield* sendOf(new GetStatus({ sessionId }))
        expect(answer).toEqual(view)
        yield* Scope.close(scope, Exit.void)
      }))

    it.effect(`${way}: retries when the receiver says it is not the owner any more`, () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const responder = yield* owner(2).pipe(Scope.extend(scope))
        const answer = yield* sendOf(new GetStatus({ sessionId }))
        expect(answer).toEqual(view)
        expect(responder.seen()).toBe(3)
        yield* Scope.close(scope, Exit.void)
      }))

    it.effect(`${way}: keeps trying while nobody serves the shard, and succeeds once an owner appears`, () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        yield* Effect.fork(Effect.delay(owner(0).pipe(Scope.extend(scope)), "400 millis"))
        const answer = yield* sendOf(new GetStatus({ sessionId }))
        expect(answer).toEqual(view)
        yield* Scope.close(scope, Exit.void)
      }))

    it.effect(`${way}: gives up with OwnerUnavailable when the budget runs out`, () =>
      Effect.gen(function*() {
        const started = Date.now()
        const error = yield* Effect.flip(sendOf(new GetStatus({ sessionId })))
        const took = Date.now() - started
        expect(error._tag).toBe("OwnerUnavailable")
        if (error._tag === "OwnerUnavailable") {
          expect(error.shard).toBe(shard)
          expect(error.attempts).toBeGreaterThan(2)
          expect(error.lastError).toContain("no owner")
        }
        // The 1 s budget, plus at most one backoff step and one request timeout.
        expect(took).toBeGreaterThanOrEqual(1000)
        expect(took).toBeLessThan(2500)
      }))

    it.effect(`${way}: a queued text's answer, and a refusal, as the owner gave them`, () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        yield* owner(0).pipe(Scope.extend(scope))
        expect(yield* sendOf(queueText)).toEqual(accepted)
        yield* Scope.close(scope, Exit.void)
        const refusing = yield* Scope.make()
        yield* owner(0, Exit.fail(limited)).pipe(Scope.extend(refusing))
        expect(yield* Effect.flip(sendOf(queueText))).toEqual(limited)
        yield* Scope.close(refusing, Exit.void)
      }))
  }
  it.effect("sendThen goes the Effect way, span and all, while tracing is on", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* owner(0).pipe(Scope.extend(scope))
      const spans: Array<string> = []
      const base = yield* Effect.tracer
      const tracer = Tracer.make({
        span: (name, ...rest) => {
          spans.push(name)
          return base.span(name, ...rest)
        },
        context: base.context
      })
      const router = yield* Router.make(options).pipe(
        Effect.provide(Layer.merge(Layer.setTracerEnabled(true), Layer.setTracer(tracer)))
      )
      const answer = yield* Effect.async<unknown, unknown>((resume) => router.sendThen(queueText, resume))
      expect(answer).toEqual(accepted)
      expect(spans).toContain("Router.send")
      yield* Scope.close(scope, Exit.void)
    }))
})
