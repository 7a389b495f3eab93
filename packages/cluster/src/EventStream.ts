/**
 * The JetStream stream `WA_EVENTS` (subjects `wa.evt.>`): made (or brought to the configured limits) when a node
 * starts, and published to with each event's id as the message id, so a repeat within the duplicate window (an
 * event published again by a shard's next owner, which found it not yet marked published) is stored once.
 */
import { jetstream, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream"
import { EVENTS_STREAM } from "@wacluster/domain/Events"
import { Config, Context, Duration, Effect, Layer, Schedule } from "effect"
import { ClusterConfig } from "./ClusterConfig.js"
import { Nats } from "./Nats.js"
import { NatsError } from "./NatsError.js"

export interface EventStreamConfig {
  /** Events older than this are dropped from the stream. */
  readonly maxAge: Duration.Duration
  /** The stream drops its oldest events beyond this size (bytes; -1: no limit). */
  readonly maxBytes: number
  /** How long the stream remembers an event id to drop a repeat. */
  readonly duplicateWindow: Duration.Duration
}

export const eventStreamConfig: Config.Config<EventStreamConfig> = Config.all({
  maxAge: Config.duration("EVENTS_MAX_AGE").pipe(
    Config.withDefault(Duration.days(7)),
    Config.withDescription("How long WA_EVENTS keeps an event")
  ),
  maxBytes: Config.integer("EVENTS_MAX_BYTES").pipe(
    Config.withDefault(1024 * 1024 * 1024),
    Config.validate({ message: "EVENTS_MAX_BYTES must be positive or -1", validation: (n) => n > 0 || n === -1 }),
    Config.withDescription("The most bytes WA_EVENTS holds before it drops its oldest events (-1: no limit)")
  ),
  duplicateWindow: Config.duration("EVENTS_DUPLICATE_WINDOW").pipe(
    Config.withDefault(Duration.minutes(10)),
    Config.withDescription("How long WA_EVENTS remembers an event id to drop a repeat")
  )
})

const nanos = (duration: Duration.Duration) => Duration.toMillis(duration) * 1_000_000

export class EventStream extends Context.Tag("@wacluster/cluster/EventStream")<EventStream, {
  /** Publishes one event; succeeds once the stream has stored it (or already had it). */
  readonly publish: (subject: string, payload: Uint8Array, eventId: string) => Effect.Effect<void, NatsError>
}>() {
  static readonly make = Effect.fn("EventStream.make")(function*(config: EventStreamConfig) {
    const nats = yield* Nats
    const { replicas } = yield* ClusterConfig
    const js = jetstream(nats.connection)
    const limits: Partial<StreamConfig> = {
      max_age: nanos(config.maxAge),
      max_bytes: config.maxBytes,
      duplicate_window: nanos(config.duplicateWindow)
    }
    const ensure = async (jsm: JetStreamManager) => {
      try {
        const info = await jsm.streams.info(EVENTS_STREAM)
        const current = info.config
        // Never fewer replicas than it has (one node configured lower must not weaken it for everyone).
        const numReplicas = Math.max(current.num_replicas, replicas)
        if (
          current.max_age !== limits.max_age || current.max_bytes !== limits.max_bytes ||
          current.duplicate_window !== limits.duplicate_window || current.num_replicas !== numReplicas
        ) {
          await jsm.streams.update(EVENTS_STREAM, { ...limits, num_replicas: numReplicas })
        }
      } catch (error) {
        if (!(error instanceof Error && /stream not found/i.test(error.message))) throw error
        await jsm.streams.add({
          name: EVENTS_STREAM,
          subjects: ["wa.evt.>"],
          storage: "file" as StreamConfig["storage"],
          num_replicas: replicas,
          ...limits
        })
      }
    }
    const setUp = Effect.tryPromise({
      try: async () => ensure(await js.jetstreamManager()),
      catch: (cause) => new NatsError({ operation: `stream ${EVENTS_STREAM}`, cause })
    })
    yield* setUp.pipe(
      // A NATS cluster started beside the node may still be electing its JetStream leaders.
      Effect.tapError((error) => Effect.logWarning("could not set up the events stream; trying again", error)),
      Effect.retry({ times: 40, schedule: Schedule.spaced("500 millis") })
    )
    const publishOnce = (subject: string, payload: Uint8Array, eventId: string) =>
      Effect.tryPromise({
        try: () => js.publish(subject, payload, { msgID: eventId, timeout: 5_000 }),
        catch: (cause) => new NatsError({ operation: `publish ${subject}`, cause })
      })
    return EventStream.of({
      publish: (subject, payload, eventId) =>
        publishOnce(subject, payload, eventId).pipe(
          // The stream is gone (a NATS server that lost its storage): made again, then the event published.
          Effect.catchIf(
            (error) => /no responders|stream not found/i.test(String(error.cause)),
            () => Effect.zipRight(setUp, publishOnce(subject, payload, eventId))
          ),
          Effect.asVoid
        )
    })
  })

  static readonly layerConfig = Layer.effect(EventStream, Effect.flatMap(eventStreamConfig, EventStream.make))
}
