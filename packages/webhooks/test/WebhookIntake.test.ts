import { expect, it } from "@effect/vitest"
import { ClusterConfig } from "@wacluster/cluster/ClusterConfig"
import { EventStream } from "@wacluster/cluster/EventStream"
import { Nats } from "@wacluster/cluster/Nats"
import { eventually, privateNats } from "@wacluster/cluster/test/support"
import { webhooksAckedSubject } from "@wacluster/domain/Control"
import { EventEnvelope, EventEnvelopeJson, eventSubject } from "@wacluster/domain/Events"
import { makeEventId, makeSessionId, makeTenantId } from "@wacluster/domain/Ids"
import { storeLayer } from "@wacluster/store/test/support"
import * as WebhookQueue from "@wacluster/store/WebhookQueue"
import * as Webhooks from "@wacluster/store/Webhooks"
import { Context, DateTime, Duration, Effect, Layer, Redacted, Schema, SubscriptionRef } from "effect"
import * as WebhookIntake from "../src/WebhookIntake.js"

const config = ClusterConfig.layerWith({ shards: 8 })

/** A node's intake on a NATS connection of its own, whose floor is never read on a timer when all was acked. */
const intakeOf = (url: string, name: string) =>
  WebhookIntake.layerWith({ idleFloorRead: Duration.hours(1) }).pipe(
    Layer.provideMerge(EventStream.layerConfig),
    Layer.provideMerge(Nats.layer({ url: Redacted.make(url), name }))
  )

const publishEvents = (count: number) =>
  Effect.gen(function*() {
    const stream = yield* EventStream
    const tenantId = yield* makeTenantId
    const sessionId = yield* makeSessionId
    for (let i = 0; i < count; i++) {
      const event = new EventEnvelope({
        id: yield* makeEventId,
        type: "session.status",
        timestamp: yield* DateTime.now,
        tenantId,
        data: { sessionId, status: "connecting", reason: "reconnecting" }
      })
      const payload = new TextEncoder().encode(yield* Schema.encode(EventEnvelopeJson)(event))
      yield* stream.publish(eventSubject(tenantId, sessionId, "session.status"), payload, event.id)
    }
  })

const floorOf = (node: Context.Context<WebhookIntake.WebhookIntake>) =>
  SubscriptionRef.get(Context.get(node, WebhookIntake.WebhookIntake).floor)

/** Waits until every floor is at least `seq` (failing with where they stand), then reads them. */
const floorsReach = (floors: ReadonlyArray<Effect.Effect<number>>, seq: number, within: Duration.DurationInput) => {
  const seen = () => floors.map((floor) => Effect.runSync(floor))
  return eventually(() => seen().every((floor) => floor >= seq), within, `every floor at ${seq}`, seen).pipe(
    Effect.map(seen)
  )
}

it.live(
  "every node's floor follows the events acknowledged by any node, with no timed read once all was acknowledged",
  () =>
    Effect.gen(function*() {
      const server = yield* privateNats()
      const store = yield* Layer.build(
        Layer.mergeAll(Webhooks.layer, WebhookQueue.layer).pipe(Layer.provideMerge(storeLayer("intake")))
      )
      const node = (name: string) =>
        Layer.build(intakeOf(server.url, name).pipe(Layer.provide(config), Layer.provide(Layer.succeedContext(store))))
      const a = yield* node("node-a")
      const b = yield* node("node-b")
      const floors = [floorOf(a), floorOf(b)]
      const stream = Layer.succeedContext(a)

      // Every node says so after each batch it acknowledged.
      const words = { count: 0 }
      const subscriber = yield* Effect.acquireRelease(
        Effect.sync(() =>
          Context.get(a, Nats).connection.subscribe(webhooksAckedSubject, {
            callback: () => {
              words.count++
            }
          })
        ),
        (subscription) => Effect.sync(() => subscription.unsubscribe())
      )
      expect(subscriber.getSubject()).toBe("wa.ctl.webhooks.acked")

      yield* publishEvents(30).pipe(Effect.provide(stream))
      expect(yield* floorsReach(floors, 30, "10 seconds")).toEqual([30, 30])
      expect(words.count).toBeGreaterThan(0)

      // Settled (nothing in flight, and reads are an hour apart now): only a node's word moves the floors.
      yield* Effect.sleep(Duration.millis(300))
      for (let round = 1; round <= 3; round++) {
        yield* publishEvents(5).pipe(Effect.provide(stream))
        expect(yield* floorsReach(floors, 30 + 5 * round, "10 seconds")).toEqual([30 + 5 * round, 30 + 5 * round])
        yield* Effect.sleep(Duration.millis(300))
      }
    }).pipe(Effect.scoped),
  30_000
)
