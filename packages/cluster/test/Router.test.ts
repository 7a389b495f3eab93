import { expect, layer } from "@effect/vitest"
import { SessionId } from "@wacluster/domain/Ids"
import { GetStatus, NotOwner, rpcSubject, SessionStatusView, StatusMetrics } from "@wacluster/domain/Protocol"
import { encodeReply, SessionCommandJson } from "@wacluster/domain/ProtocolJson"
import { ShardNumber, shardOf } from "@wacluster/domain/Shard"
import { Duration, Effect, Exit, Layer, Redacted, Schema, Scope } from "effect"
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

/** Answers the shard's subject: `NotOwner` for the first `refusals` requests, then the status. */
const owner = (refusals: number) =>
  Effect.gen(function*() {
    const nats = yield* Nats
    let seen = 0
    yield* nats.serve(rpcSubject(shard), (payload) =>
      Effect.gen(function*() {
        const command = yield* decodeCommand(new TextDecoder().decode(payload))
        seen++
        const exit = seen <= refusals ? Exit.fail(new NotOwner({ shard: ShardNumber.make(shard) })) : Exit.succeed(view)
        return new TextEncoder().encode(yield* encodeReply(command, exit))
      }).pipe(Effect.orDie))
    return { seen: () => seen }
  })

const TestLayer = Router.layer({ requestTimeout: Duration.millis(300), budget: Duration.seconds(1) }).pipe(
  Layer.provideMerge(
    Layer.unwrapScoped(
      Effect.map(privateNats(), (server) => Nats.layer({ url: Redacted.make(server.url), name: "router-test" }))
    )
  ),
  Layer.provideMerge(ClusterConfig.layerWith({ shards: SHARDS }))
)

layer(TestLayer, { timeout: 30_000, excludeTestServices: true })("Router", (it) => {
  it.effect("delivers a command to the shard's owner and returns its typed answer", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* owner(0).pipe(Scope.extend(scope))
      const answer = yield* (yield* Router).send(new GetStatus({ sessionId }))
      expect(answer).toEqual(view)
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("retries when the receiver says it is not the owner any more", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const responder = yield* owner(2).pipe(Scope.extend(scope))
      const answer = yield* (yield* Router).send(new GetStatus({ sessionId }))
      expect(answer).toEqual(view)
      expect(responder.seen()).toBe(3)
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("keeps trying while nobody serves the shard, and succeeds once an owner appears", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* Effect.fork(Effect.delay(owner(0).pipe(Scope.extend(scope)), "400 millis"))
      const answer = yield* (yield* Router).send(new GetStatus({ sessionId }))
      expect(answer).toEqual(view)
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("gives up with OwnerUnavailable when the budget runs out", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const error = yield* Effect.flip((yield* Router).send(new GetStatus({ sessionId })))
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
})
