/**
 * The intake: the durable JetStream consumer `webhooks` on WA_EVENTS, pulled by every node. Each event is queued in
 * Postgres once for every endpoint of its session that wants it, tagged with its position in the stream, and only
 * then acknowledged; an event handed out again (a node died before its ack) is not queued twice.
 *
 * Several nodes queue at once, so a later event of a session may be queued before an earlier one. The consumer's
 * ack floor says up to where every event has been queued: deliveries are handed out only up to it (`floor`), in
 * stream order, so each endpoint still gets its session's events in order.
 *
 * The floor is read every FLOOR_EVERY while anything is in flight (events not yet handed out or not yet
 * acknowledged). Once a read finds nothing in flight the floor can only move after a node acknowledges more, and
 * every node says so on `wa.ctl.webhooks.acked` after each batch: the next read waits for that, or for
 * `idleFloorRead` should the word be lost (a reconnect). An idle cluster reads it every few seconds instead of
 * twenty times a second on every node.
 */
import {
  AckPolicy,
  type Consumer,
  type ConsumerMessages,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JsMsg
} from "@nats-io/jetstream"
import { ClusterConfig } from "@wacluster/cluster/ClusterConfig"
import { EventStream } from "@wacluster/cluster/EventStream"
import { Nats } from "@wacluster/cluster/Nats"
import { NatsError } from "@wacluster/cluster/NatsError"
import * as SlowStops from "@wacluster/cluster/SlowStops"
import { webhooksAckedSubject } from "@wacluster/domain/Control"
import { EVENTS_STREAM } from "@wacluster/domain/Events"
import { SessionId } from "@wacluster/domain/Ids"
import { shardOf } from "@wacluster/domain/Shard"
import { type QueuedEvent, WebhookQueue } from "@wacluster/store/WebhookQueue"
import { Webhooks } from "@wacluster/store/Webhooks"
import { Chunk, Context, Duration, Effect, Layer, Queue, Schedule, Schema, Stream, SubscriptionRef } from "effect"

export const CONSUMER = "webhooks"
/** How long a handed-out event may stay unacknowledged before JetStream hands it out again. */
const ACK_WAIT = Duration.seconds(30)
/** How often the ack floor is read while events are in flight. */
const FLOOR_EVERY = Duration.millis(50)
/** How often it is read when nothing was in flight and no node said it acknowledged more. */
export const IDLE_FLOOR_READ = Duration.seconds(2)
const BATCH = 500

export class WebhookIntake extends Context.Tag("@wacluster/webhooks/WebhookIntake")<WebhookIntake, {
  /** The stream position up to which every event has been queued. */
  readonly floor: SubscriptionRef.SubscriptionRef<number>
}>() {}

const Routing = Schema.Struct({
  id: Schema.String,
  type: Schema.String,
  data: Schema.Struct({ sessionId: SessionId })
})
const decodeRouting = Schema.decodeUnknownOption(Schema.parseJson(Routing))

const natsCall = <A>(operation: string, run: () => Promise<A>) =>
  Effect.tryPromise({ try: run, catch: (cause) => new NatsError({ operation, cause }) })

/**
 * The messages as an iterable whose `return` ends the pull. The consumer's own iterator is an async generator: its
 * `return` waits for the `next` in flight, that is for the next event, which may never come; a stream ending (a
 * node stopping) waited for it for good.
 */
const endable = (messages: ConsumerMessages): AsyncIterable<JsMsg> => ({
  [Symbol.asyncIterator]: () => {
    const iterator = messages[Symbol.asyncIterator]()
    return {
      next: () => iterator.next(),
      return: async () => {
        messages.stop()
        return { done: true, value: undefined }
      }
    }
  }
})

export interface IntakeOptions {
  /** How long the floor goes unread once nothing is in flight, when no node says it acknowledged more. */
  readonly idleFloorRead: Duration.Duration
}

export const make = (options: IntakeOptions) =>
  Effect.gen(function*() {
    const nats = yield* Nats
    // The stream is made (or brought to its limits) by EventStream: it must exist before its consumer.
    yield* EventStream
    const { shards } = yield* ClusterConfig
    const webhooks = yield* Webhooks
    const queue = yield* WebhookQueue
    const js = jetstream(nats.connection)

    const ensureConsumer = natsCall(`consumer ${CONSUMER}`, async () => {
      const jsm = await jetstreamManager(nats.connection)
      try {
        await jsm.consumers.info(EVENTS_STREAM, CONSUMER)
      } catch (error) {
        if (!(error instanceof Error && /consumer not found/i.test(error.message))) throw error
        await jsm.consumers.add(EVENTS_STREAM, {
          durable_name: CONSUMER,
          ack_policy: AckPolicy.Explicit,
          // Endpoints get what happens after they exist; the first node to start makes the consumer.
          deliver_policy: DeliverPolicy.New,
          ack_wait: Duration.toMillis(ACK_WAIT) * 1_000_000,
          max_deliver: -1,
          max_ack_pending: 20_000
        }).catch(async (raced: unknown) => {
          // Another node made it a moment earlier.
          await jsm.consumers.info(EVENTS_STREAM, CONSUMER).catch(() => {
            throw raced
          })
        })
      }
      return js.consumers.get(EVENTS_STREAM, CONSUMER)
    })

    const consumer: Consumer = yield* ensureConsumer.pipe(
      Effect.tapError((error) => Effect.logWarning("could not set up the webhooks consumer; trying again", error)),
      Effect.retry({ times: 40, schedule: Schedule.spaced("500 millis") })
    )

    /** Every node reads the floor again (this one too: it hears its own word). A word lost costs a late read only. */
    const announceAcked = Effect.sync(() => {
      try {
        nats.connection.publish(webhooksAckedSubject)
      } catch {
        // Closed or draining: the others read the floor after idleFloorRead.
      }
    })

    /** Queues a batch for its endpoints, then acknowledges it. */
    const intake = (messages: ReadonlyArray<JsMsg>) =>
      Effect.gen(function*() {
        const routed = messages.map((message) => ({ message, routing: decodeRouting(message.string()) }))
        const sessionIds = Array.from(
          new Set(routed.flatMap(({ routing }) => routing._tag === "Some" ? [routing.value.data.sessionId] : []))
        )
        const targets = yield* webhooks.targets(sessionIds)
        const bySession = new Map<string, Array<(typeof targets)[number]>>()
        for (const target of targets) {
          bySession.set(target.sessionId, [...bySession.get(target.sessionId) ?? [], target])
        }
        const queued: Array<QueuedEvent> = []
        for (const { message, routing } of routed) {
          if (routing._tag === "None") {
            yield* Effect.logWarning("an event on WA_EVENTS is not an event envelope; no webhook gets it").pipe(
              Effect.annotateLogs({ subject: message.subject, streamSeq: message.seq })
            )
            continue
          }
          const event = routing.value
          for (const target of bySession.get(event.data.sessionId) ?? []) {
            if (target.eventTypes.length > 0 && !target.eventTypes.includes(event.type)) continue
            queued.push({
              webhookId: target.id,
              shard: shardOf(event.data.sessionId, shards),
              eventId: event.id,
              eventType: event.type,
              streamSeq: message.seq,
              payload: message.string()
            })
          }
        }
        yield* queue.enqueue(queued)
        for (const message of messages.slice(0, -1)) message.ack()
        // The last acknowledgement is confirmed: the server takes a consumer's acknowledgements in order, so every
        // node that hears the word reads a floor that has moved (else it reads again FLOOR_EVERY later).
        const last = messages.at(-1)
        if (last !== undefined) {
          yield* natsCall("acknowledge webhooks events", () => last.ackAck({ timeout: 1_000 })).pipe(Effect.ignore)
        }
        yield* announceAcked
      }).pipe(
        // Postgres away: the batch is kept (not acknowledged) and tried again; JetStream also hands it out again
        // after ACK_WAIT, and queuing twice does nothing.
        Effect.tapError((error) => Effect.logWarning("could not queue events for webhooks; trying again", error)),
        Effect.retry(Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("2 seconds")))),
        Effect.timeout(ACK_WAIT),
        Effect.ignore
      )

    const pull = Stream.unwrapScoped(Effect.gen(function*() {
      const messages = yield* Effect.acquireRelease(
        natsCall("consume webhooks", () => consumer.consume({ max_messages: BATCH * 2 })),
        (messages) =>
          Effect.promise(() => messages.close().then(() => undefined, () => undefined)).pipe(
            SlowStops.track("the webhooks consumer")
          )
      )
      return Stream.fromAsyncIterable(
        endable(messages),
        (cause) => new NatsError({ operation: "consume webhooks", cause })
      )
    })).pipe(
      Stream.groupedWithin(BATCH, Duration.millis(5)),
      Stream.mapEffect((chunk) => intake(Chunk.toReadonlyArray(chunk)))
    )

    yield* Stream.runDrain(pull).pipe(
      Effect.catchAll((error) => Effect.logWarning("the webhooks consumer stopped; starting it again", error)),
      Effect.zipRight(Effect.sleep("1 second")),
      Effect.forever,
      Effect.forkScoped
    )

    const floor = yield* SubscriptionRef.make(0)
    /** Whether the read found nothing in flight (false when it failed: read again soon). */
    const readFloor = natsCall("webhooks consumer info", () => consumer.info()).pipe(
      Effect.tap((info) => SubscriptionRef.update(floor, (current) => Math.max(current, info.ack_floor.stream_seq))),
      Effect.map((info) => info.num_pending === 0 && info.num_ack_pending === 0),
      Effect.catchAll((error) =>
        Effect.as(Effect.logDebug("could not read the webhooks consumer's ack floor", error), false)
      )
    )
    const acked = yield* Queue.sliding<void>(1)
    yield* Effect.acquireRelease(
      Effect.sync(() =>
        nats.connection.subscribe(webhooksAckedSubject, {
          callback: () => {
            acked.unsafeOffer(undefined)
          }
        })
      ),
      (subscription) => Effect.sync(() => subscription.unsubscribe())
    )
    yield* readFloor.pipe(
      Effect.flatMap((settled) =>
        settled
          ? Effect.raceFirst(Queue.take(acked), Effect.sleep(options.idleFloorRead))
          : Effect.sleep(FLOOR_EVERY)
      ),
      Effect.forever,
      Effect.forkScoped
    )

    return WebhookIntake.of({ floor })
  })

export const layerWith = (options: IntakeOptions) => Layer.scoped(WebhookIntake, make(options))

export const layer = layerWith({ idleFloorRead: IDLE_FLOOR_READ })
