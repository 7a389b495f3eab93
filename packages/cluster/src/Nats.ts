/**
 * The one place that touches the NATS client: connection, request/reply and KV buckets,
 * all as Effects with tagged errors.
 */
import { jetstream, JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream"
import { Kvm } from "@nats-io/kv"
import type { KV, KvEntry } from "@nats-io/kv"
import type { Msg, NatsConnection } from "@nats-io/nats-core"
import { RequestError, TimeoutError } from "@nats-io/nats-core"
import { connect } from "@nats-io/transport-node"
import { Config, Context, Duration, Effect, Layer, Option, Redacted, Runtime, Stream } from "effect"
import type { Scope } from "effect"
import { NatsError, NoResponders, RequestTimeout, RevisionMismatch } from "./NatsError.js"
import * as SlowStops from "./SlowStops.js"

export interface NatsConfig {
  readonly url: Redacted.Redacted<string>
  readonly name: string
}

export interface BucketOptions {
  readonly history?: number
  readonly replicas?: number
}

export interface KvRecord {
  readonly key: string
  readonly revision: number
  readonly operation: "PUT" | "DEL" | "PURGE"
  readonly value: Uint8Array
}

/** A KV bucket whose every write is a compare-and-set or an unconditional put. */
export interface Bucket {
  readonly name: string
  readonly get: (key: string) => Effect.Effect<Option.Option<KvRecord>, NatsError>
  /** Creates the key; fails with RevisionMismatch when it exists. Returns the new revision. */
  readonly create: (key: string, value: Uint8Array) => Effect.Effect<number, NatsError | RevisionMismatch>
  /** Writes only if the key is still at `revision`. Returns the new revision. */
  readonly update: (
    key: string,
    value: Uint8Array,
    revision: number
  ) => Effect.Effect<number, NatsError | RevisionMismatch>
  readonly put: (key: string, value: Uint8Array) => Effect.Effect<number, NatsError>
  /** Deletes only if the key is still at `revision`. */
  readonly delete: (key: string, revision: number) => Effect.Effect<void, NatsError | RevisionMismatch>
  /** Deletes the key whatever its revision (a node leaving membership). */
  readonly remove: (key: string) => Effect.Effect<void, NatsError>
  /** Every current value, then every change, for as long as the stream is consumed. */
  readonly watch: Stream.Stream<KvRecord, NatsError>
}

const isWrongLastSequence = (error: unknown): boolean =>
  error instanceof JetStreamApiError &&
  (error.code === JetStreamApiCodes.StreamWrongLastSequence ||
    error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)

const toRecord = (entry: KvEntry): KvRecord => ({
  key: entry.key,
  revision: entry.revision,
  operation: entry.operation,
  value: entry.value
})

const casAttempt = <A>(bucket: string, key: string, operation: string, run: () => Promise<A>) =>
  Effect.tryPromise({
    try: run,
    catch: (cause): NatsError | RevisionMismatch =>
      isWrongLastSequence(cause) ? new RevisionMismatch({ bucket, key }) : new NatsError({ operation, cause })
  })

/**
 * A bucket whose stream vanished (a NATS server restarted without its storage) answers "JetStream not
 * enabled" or "stream not found"; re-creating the bucket (idempotent) lets the cluster heal by itself.
 */
const isStreamGone = (error: unknown): boolean =>
  error instanceof Error && /JetStreamNotEnabled|stream not found|no responders/i.test(`${error.name} ${error.message}`)

const makeBucket = (open: () => Promise<KV>, first: KV, name: string): Bucket => {
  let current = first
  let reopening: Promise<KV> | undefined
  const use = async <A>(run: (kv: KV) => Promise<A>): Promise<A> => {
    try {
      return await run(current)
    } catch (error) {
      if (!isStreamGone(error)) throw error
      reopening ??= open().finally(() => reopening = undefined)
      current = await reopening
      return await run(current)
    }
  }
  return makeBucketOps(use, name)
}

const makeBucketOps = (
  use: <A>(run: (kv: KV) => Promise<A>) => Promise<A>,
  name: string
): Bucket => ({
  name,
  get: (key) =>
    Effect.tryPromise({
      try: () => use((kv) => kv.get(key)),
      catch: (cause) => new NatsError({ operation: `kv.get ${name}/${key}`, cause })
    }).pipe(Effect.map((entry) => Option.map(Option.fromNullable(entry), toRecord))),
  create: (key, value) => casAttempt(name, key, `kv.create ${name}/${key}`, () => use((kv) => kv.create(key, value))),
  update: (key, value, revision) =>
    casAttempt(name, key, `kv.update ${name}/${key}`, () => use((kv) => kv.update(key, value, revision))),
  put: (key, value) =>
    Effect.tryPromise({
      try: () => use((kv) => kv.put(key, value)),
      catch: (cause) => new NatsError({ operation: `kv.put ${name}/${key}`, cause })
    }),
  delete: (key, revision) =>
    casAttempt(name, key, `kv.delete ${name}/${key}`, () => use((kv) => kv.delete(key, { previousSeq: revision }))),
  remove: (key) =>
    Effect.tryPromise({
      try: () => use((kv) => kv.delete(key)),
      catch: (cause) => new NatsError({ operation: `kv.delete ${name}/${key}`, cause })
    }),
  watch: Stream.unwrapScoped(
    Effect.acquireRelease(
      Effect.tryPromise({
        try: () => use((kv) => kv.watch()),
        catch: (cause) => new NatsError({ operation: `kv.watch ${name}`, cause })
      }),
      (iterator) => Effect.sync(() => iterator.stop())
    ).pipe(
      // Not Stream.fromAsyncIterable: its finalizer calls the generator's return(), which waits behind a
      // pending next() until the bucket changes again. stop() (above) ends the pending next() at once.
      Effect.map((iterator) => {
        const entries = iterator[Symbol.asyncIterator]()
        return Stream.repeatEffectOption(
          Effect.tryPromise({
            try: () => entries.next(),
            catch: (cause) => Option.some(new NatsError({ operation: `kv.watch ${name}`, cause }))
          }).pipe(
            Effect.flatMap((next) =>
              next.done === true ? Effect.fail(Option.none()) : Effect.succeed(toRecord(next.value))
            )
          )
        )
      })
    )
  )
})

/** Why a request on `subject` failed, from what the client rejected it with. */
export const requestError = (subject: string, cause: unknown): NatsError | NoResponders | RequestTimeout => {
  if (cause instanceof RequestError && cause.isNoResponders()) return new NoResponders({ subject })
  if (cause instanceof TimeoutError) return new RequestTimeout({ subject })
  if (cause instanceof RequestError && cause.cause instanceof TimeoutError) return new RequestTimeout({ subject })
  return new NatsError({ operation: `request ${subject}`, cause })
}

/**
 * A request handler outside Effect (see `serve`): true when it took the request and will answer it through `respond`
 * (once), false to leave it to the Effect handler.
 */
export type DirectHandler = (payload: Uint8Array, respond: (reply: Uint8Array) => void) => boolean

export class Nats extends Context.Tag("@wacluster/cluster/Nats")<Nats, {
  /** What the connection was made with (another connection to the same servers: the lease keeper's). */
  readonly config: NatsConfig
  readonly connection: NatsConnection
  readonly request: (
    subject: string,
    payload: Uint8Array,
    timeout: Duration.DurationInput
  ) => Effect.Effect<Uint8Array, NatsError | NoResponders | RequestTimeout>
  /**
   * Answers every request on `subject` with `handle` until the scope closes. Requests are served
   * concurrently; a handler must not fail (it encodes its failures in the reply).
   *
   * `direct`, when given, sees each request first, outside Effect: it answers true when it took the request (and
   * answers it through `respond`, once), false to leave it to `handle`. It must not throw.
   */
  readonly serve: <R>(
    subject: string,
    handle: (payload: Uint8Array) => Effect.Effect<Uint8Array, never, R>,
    direct?: DirectHandler
  ) => Effect.Effect<void, NatsError, Scope.Scope | R>
  readonly bucket: (name: string, options?: BucketOptions) => Effect.Effect<Bucket, NatsError>
}>() {
  static readonly make = Effect.fn("Nats.make")(function*(config: NatsConfig) {
    const connection = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          connect({
            servers: Redacted.value(config.url).split(",").map((url) => url.trim()).filter((url) => url.length > 0),
            name: config.name,
            // A node must survive NATS restarts: keep reconnecting forever, never give up the process.
            maxReconnectAttempts: -1,
            reconnectTimeWait: 250,
            // Capturing a stack trace for every request costs more than the request on the hot path.
            noAsyncTraces: true,
            pingInterval: 5_000
          }),
        catch: (cause) => new NatsError({ operation: "connect", cause })
      }),
      (nc) =>
        Effect.promise(() => nc.drain()).pipe(
          Effect.timeout("3 seconds"),
          Effect.catchAllCause(() => Effect.promise(() => nc.close().catch(() => undefined))),
          SlowStops.track("the NATS connection")
        )
    )
    yield* Effect.annotateLogs(Effect.logInfo("connected to NATS"), "server", connection.getServer())

    const request = (subject: string, payload: Uint8Array, timeout: Duration.DurationInput) =>
      Effect.tryPromise({
        // No abort signal: a request cannot be cancelled in NATS, it times out by itself (and Effect would
        // allocate an AbortController per request).
        try: () => connection.request(subject, payload, { timeout: Duration.toMillis(timeout) }),
        catch: (cause) => requestError(subject, cause)
      }).pipe(Effect.map((msg: Msg) => msg.data))

    const serve = <R>(
      subject: string,
      handle: (payload: Uint8Array) => Effect.Effect<Uint8Array, never, R>,
      direct?: DirectHandler
    ) =>
      Effect.gen(function*() {
        const runtime = yield* Effect.runtime<R>()
        const runFork = Runtime.runFork(runtime)
        /** An answer whose requester went away (the connection closing) has nowhere to go: dropped. */
        const respondTo = (msg: Msg) => (reply: Uint8Array) => {
          try {
            msg.respond(reply)
          } catch {
            // Closed or draining: the requester times out and retries at the owner it finds next.
          }
        }
        yield* Effect.acquireRelease(
          Effect.try({
            try: () =>
              connection.subscribe(subject, {
                callback: (error, msg) => {
                  if (error !== null) return
                  const respond = respondTo(msg)
                  if (direct !== undefined && direct(msg.data, respond)) return
                  runFork(handle(msg.data).pipe(Effect.flatMap((reply) => Effect.sync(() => respond(reply)))))
                }
              }),
            catch: (cause) => new NatsError({ operation: `subscribe ${subject}`, cause })
          }),
          (subscription) => Effect.sync(() => subscription.unsubscribe())
        )
      })

    const js = jetstream(connection)
    const kvm = new Kvm(js)
    const bucket = (name: string, options: BucketOptions = {}) => {
      const replicas = options.replicas ?? 1
      const open = async (first: boolean) => {
        // allow_direct false: reads go to the stream's leader. A direct get may be answered by a follower that has
        // not applied the latest write yet, so a node could read back an older lease than the one it just wrote.
        const kv = await kvm.create(name, { history: options.history ?? 1, replicas, allow_direct: false })
        // An existing bucket keeps its stream as it is; one made before the cluster grew is scaled up here (never
        // down: one node configured with fewer replicas must not weaken the bucket for everyone).
        const status = await kv.status()
        const scaleUp = status.replicas < replicas
        // Reopening (the stream vanished under a running node) waits for nothing: the caller's own retries do.
        if (!(scaleUp || (first && status.replicas > 1))) return kv
        const jsm = await js.jetstreamManager()
        const stream = status.streamInfo.config.name
        if (scaleUp) await jsm.streams.update(stream, { num_replicas: replicas })
        // A replicated stream that was just made or scaled up elects its leader among its peers; until then a write
        // finds no responder. Waits for the leader (up to 10 seconds; a write will tell after that).
        const wanted = Math.max(status.replicas, replicas)
        for (let attempt = 0; attempt < 50; attempt++) {
          const { cluster } = await jsm.streams.info(stream)
          if (cluster?.leader !== undefined && (cluster.replicas?.length ?? 0) + 1 >= wanted) break
          await new Promise((resolve) => setTimeout(resolve, 200))
        }
        return kv
      }
      return Effect.tryPromise({
        try: () => open(true),
        catch: (cause) => new NatsError({ operation: `kv.open ${name}`, cause })
      }).pipe(Effect.map((kv) => makeBucket(() => open(false), kv, name)))
    }

    return { config, connection, request, serve, bucket }
  })

  static readonly layer = (config: NatsConfig) => Layer.scoped(Nats, Nats.make(config))

  static readonly layerConfig = (name: string) =>
    Layer.scoped(
      Nats,
      Effect.flatMap(
        Config.redacted("NATS_URL").pipe(
          Config.withDefault(Redacted.make("nats://127.0.0.1:4222")),
          Config.withDescription("NATS server URLs, comma separated")
        ),
        (url) => Nats.make({ url, name })
      )
    )
}
