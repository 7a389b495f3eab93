/**
 * The per-node host of session actors. For every shard this node holds it advances the shard's fence in
 * Postgres, starts an actor for each session of the shard whose desired state is running, answers
 * `wa.rpc.<shard>` by handing commands to the actors' mailboxes, and stops everything when the shard goes.
 */
import type { SqlClient } from "@effect/sql"
import { monotonicMillis } from "@wacluster/cluster/ClusterConfig"
import { EventStream } from "@wacluster/cluster/EventStream"
import { type DirectHandler, Nats } from "@wacluster/cluster/Nats"
import { type ShardLease, ShardLifecycle } from "@wacluster/cluster/ShardLeases"
import { eventSubject } from "@wacluster/domain/Events"
import type { SessionId } from "@wacluster/domain/Ids"
import {
  rpcSubject,
  SessionBusy,
  type SessionCommand,
  SessionUnknown,
  slowCommandTimeout,
  StorageUnavailable
} from "@wacluster/domain/Protocol"
import type { CommandError, PairingError, SendError } from "@wacluster/domain/Protocol"
import { decodeCommand, encodeReply, readCommand, writeReply } from "@wacluster/domain/ProtocolJson"
import { ShardNumber } from "@wacluster/domain/Shard"
import { withHotSpan } from "@wacluster/domain/Spans"
import { Events, type PendingEvent } from "@wacluster/store/Events"
import type { Fence } from "@wacluster/store/Fence"
import type { Messages } from "@wacluster/store/Messages"
import type { Outbox } from "@wacluster/store/Outbox"
import { type SessionRuntime } from "@wacluster/store/SessionRuntime"
import { Sessions } from "@wacluster/store/Sessions"
import { ShardFences } from "@wacluster/store/ShardFences"
import type { ProxyConfig } from "@wacluster/whatsapp/ProxyConfig"
import { type WhatsAppDriver } from "@wacluster/whatsapp/WhatsAppDriver"
import {
  Cause,
  Config,
  Context,
  Duration,
  Effect,
  Exit,
  FiberMap,
  FiberRef,
  Layer,
  Option,
  Queue,
  Runtime,
  Schedule
} from "effect"
import { defaultBackoff } from "./Backoff.js"
import * as ConnectGate from "./ConnectGate.js"
import * as LoopLag from "./LoopLag.js"
import { defaultIntensity } from "./RestartIntensity.js"
import * as SessionActor from "./SessionActor.js"

export interface HostOptions
  extends Omit<SessionActor.ActorOptions, "connectGate" | "connectHeadroom" | "leaseHeld" | "eventsCommitted">
{
  /** Sockets of this node that may be connecting (handshake until the first event) at the same time. */
  readonly connectConcurrency: number
  /** New connects wait while the node's event loop runs later than this (ms)... */
  readonly connectLagLimit: Duration.Duration
  /** ...but no longer than this each. */
  readonly connectLagMaxWait: Duration.Duration
  /** How long a command may wait for the actor's answer. */
  readonly askTimeout: Duration.Duration
  /** How often each held shard is rescanned for sessions that should run but do not. */
  readonly rescanEvery: Duration.Duration
}

export const hostConfig: Config.Config<HostOptions> = Config.all({
  mailboxCapacity: Config.integer("SESSION_MAILBOX").pipe(
    Config.withDefault(256),
    Config.withDescription("Commands a session actor may have queued before callers get 'busy'")
  ),
  backoff: Config.succeed(defaultBackoff),
  intensity: Config.all({
    maxRestarts: Config.integer("SESSION_RESTART_LIMIT").pipe(
      Config.withDefault(defaultIntensity.maxRestarts),
      Config.withDescription("Socket restarts allowed within SESSION_RESTART_WINDOW before a session is parked")
    ),
    within: Config.duration("SESSION_RESTART_WINDOW").pipe(
      Config.withDefault(defaultIntensity.within),
      Config.withDescription("The window in which socket restarts are counted")
    ),
    parkFor: Config.duration("SESSION_PARK_FOR").pipe(
      Config.withDefault(defaultIntensity.parkFor),
      Config.withDescription("How long a session that keeps failing waits (disconnected/failing) before trying again")
    )
  }),
  persistEvery: Config.duration("SESSION_PERSIST_EVERY").pipe(
    Config.withDefault(Duration.seconds(30)),
    Config.withDescription("How often an actor saves its counters and activity when they changed")
  ),
  persistIdleEvery: Config.duration("SESSION_PERSIST_IDLE_EVERY").pipe(
    Config.withDefault(Duration.minutes(5)),
    Config.withDescription("How often an actor saves its uptime when nothing else changed")
  ),
  sendInterval: Config.duration("SESSION_SEND_INTERVAL").pipe(
    Config.withDefault(Duration.millis(100)),
    Config.withDescription("The least time between two queued texts one session sends")
  ),
  queueMaxAge: Config.duration("OUTBOX_MAX_AGE").pipe(
    Config.withDefault(Duration.hours(1)),
    Config.withDescription("A queued text not sent within this time fails (reason: not sent within OUTBOX_MAX_AGE)")
  ),
  rateLimits: Config.all({
    requestsPerMinute: Config.integer("SESSION_REQUESTS_PER_MINUTE").pipe(
      Config.withDefault(6_000),
      Config.validate({ message: "SESSION_REQUESTS_PER_MINUTE must be at least 1", validation: (n) => n >= 1 }),
      Config.withDescription("Requests per minute a session takes through the API, unless it has its own limit")
    ),
    messagesPerHour: Config.integer("SESSION_MESSAGES_PER_HOUR").pipe(
      Config.withDefault(10_000),
      Config.validate({ message: "SESSION_MESSAGES_PER_HOUR must be at least 1", validation: (n) => n >= 1 }),
      Config.withDescription("Texts per hour a session accepts into its queue, unless it has its own limit")
    )
  }),
  connectConcurrency: Config.integer("SESSION_CONNECT_CONCURRENCY").pipe(
    Config.withDefault(16),
    Config.validate({ message: "SESSION_CONNECT_CONCURRENCY must be at least 1", validation: (n) => n >= 1 }),
    Config.withDescription("WhatsApp connects a node runs at once (the rest wait their turn)")
  ),
  connectLagLimit: Config.duration("CONNECT_LAG_LIMIT").pipe(
    Config.withDefault(Duration.millis(300)),
    Config.withDescription("New WhatsApp connects wait while the node's event loop runs later than this")
  ),
  connectLagMaxWait: Config.duration("CONNECT_LAG_MAX_WAIT").pipe(
    Config.withDefault(Duration.seconds(5)),
    Config.withDescription("The longest a connect waits for the event loop to catch up before it goes anyway")
  ),
  askTimeout: Config.duration("SESSION_ASK_TIMEOUT").pipe(
    Config.withDefault(Duration.seconds(5)),
    Config.withDescription("How long a command waits for the session actor's answer")
  ),
  rescanEvery: Config.duration("SHARD_RESCAN_EVERY").pipe(
    Config.withDefault(Duration.seconds(10)),
    Config.withDescription("How often a node looks for sessions of its shards that should run but do not")
  )
})

/** Made once: every command and reply goes through them. */
const utf8Decoder = new TextDecoder()
const utf8Encoder = new TextEncoder()

/** The relay looks for unpublished events this often even when no commit woke it (a shard just taken over). */
const RELAY_POLL = Duration.seconds(1)
const RELAY_BATCH = 500

export class SessionHost extends Context.Tag("@wacluster/session/SessionHost")<SessionHost, {
  /** Session actors running on this node, per shard. */
  readonly running: Effect.Effect<ReadonlyMap<number, number>>
}>() {}

export const make = Effect.fn("SessionHost.make")(function*(hostOptions: HostOptions) {
  const connectGate = yield* ConnectGate.make(hostOptions.connectConcurrency)
  const loopLag = yield* LoopLag.make({
    limitMs: Duration.toMillis(hostOptions.connectLagLimit),
    maxWait: hostOptions.connectLagMaxWait
  })
  const nats = yield* Nats
  const sessions = yield* Sessions
  const fences = yield* ShardFences
  const events = yield* Events
  const stream = yield* EventStream
  /** Woken after every commit that wrote events: the relay publishes them at once. */
  const relayWake = yield* Queue.sliding<void>(1)
  const context = yield* Effect.context<
    SessionRuntime | Sessions | Messages | Outbox | Events | SqlClient.SqlClient | ProxyConfig | WhatsAppDriver
  >()
  const runFork = Runtime.runFork(yield* Effect.runtime<never>())
  // With tracing on, every command goes the Effect way, which has the span.
  const tracing = yield* FiberRef.get(FiberRef.currentTracerEnabled)

  /** How long a command waits for its actor's answer before the caller hears SessionBusy (ms). */
  const askLimit = (command: SessionCommand) =>
    Duration.toMillis(Duration.max(hostOptions.askTimeout, slowCommandTimeout(command) ?? Duration.zero))

  /**
   * Posts a command to its actor; `answer` hears, once, the actor's answer, why it was not queued, or SessionBusy
   * once `askLimit` has passed: a timer rather than Effect.timeout's race of two fibers, since every command waits
   * here. A wait abandoned (the node stopping) leaves its timer to answer nobody: harmless, and unreferenced, it
   * cannot hold a stopping process up. Once answered it lets go of `answer` (and so of the NATS message it answers):
   * what still refers to the reply (the envelope, the timer) then holds little, and at thousands of commands a second
   * what such leftovers held was copied by young-generation collections and promoted (see Mailbox).
   */
  const postWithin = (actor: SessionActor.SessionActorHandle, command: SessionCommand, answer: SessionActor.Reply) => {
    let waiting: SessionActor.Reply | undefined = answer
    const once: SessionActor.Reply = (exit) => {
      const answerOnce = waiting
      if (answerOnce === undefined) return
      waiting = undefined
      clearTimeout(timer)
      answerOnce(exit)
    }
    const timer = setTimeout(
      // Made only when needed: an error captures a stack trace.
      () => once(Exit.fail(new SessionBusy({ sessionId: command.sessionId }))),
      askLimit(command)
    )
    timer.unref()
    const refused = actor.post(command, once)
    if (refused !== undefined) once(Exit.fail(refused))
  }

  /** A command's reply as JSON; one that cannot be encoded is logged and answered as a defect. */
  const replyText = (command: SessionCommand, exit: Exit.Exit<unknown, CommandError | SendError | PairingError>) =>
    encodeReply(command, exit).pipe(
      Effect.catchAll((error) =>
        Effect.as(
          Effect.logError("a reply could not be encoded").pipe(
            Effect.annotateLogs({
              command: command._tag,
              error: error.message,
              exit: Exit.isSuccess(exit) ? "success" : Cause.pretty(exit.cause)
            })
          ),
          JSON.stringify({ _tag: "Failure", cause: { _tag: "Die", defect: "unencodable reply" } })
        )
      )
    )

  /** The actors of every shard this node runs. */
  const shardActors = new Map<number, ReadonlyMap<SessionId, SessionActor.SessionActorHandle>>()

  const runShard = (shard: number, epoch: number, lease: ShardLease) =>
    Effect.gen(function*() {
      const fence: Fence = { shard: ShardNumber.make(shard), epoch }
      const options: HostOptions & SessionActor.ActorOptions = {
        ...hostOptions,
        connectGate,
        connectHeadroom: loopLag.headroom,
        leaseHeld: lease.stillHeld,
        eventsCommitted: Queue.offer(relayWake, undefined).pipe(Effect.asVoid)
      }
      // Postgres may be away (restarting): keep trying for as long as the lease is held (the shard's scope closes
      // this when it goes), rather than hold a shard that runs nothing.
      const current = yield* fences.advance(shard, epoch).pipe(
        Effect.tapError((error) => Effect.logWarning("could not fence the shard in Postgres; retrying", error)),
        Effect.retry(Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("2 seconds"))))
      )
      if (!current) {
        // A newer epoch already fenced this shard: another node holds it; the lease will be lost shortly.
        return yield* Effect.logWarning("shard fence is ahead of this lease; not starting its sessions")
      }
      const actors = new Map<SessionId, SessionActor.SessionActorHandle>()
      // Finalizers run last to first: the first of these ends after every actor of the shard has stopped, the other
      // notes when stopping began.
      const stopping = { since: 0, sessions: 0 }
      yield* Effect.addFinalizer(() =>
        Effect.flatMap(monotonicMillis, (now) =>
          Effect.logInfo("shard stopped").pipe(
            Effect.annotateLogs({ sessions: stopping.sessions, tookMs: Math.round(now - stopping.since) })
          ))
      )
      const fibers = yield* FiberMap.make<SessionId>()
      yield* Effect.addFinalizer(() =>
        Effect.map(monotonicMillis, (now) => {
          stopping.since = now
          stopping.sessions = actors.size
        })
      )
      shardActors.set(shard, actors)
      yield* Effect.addFinalizer(() => Effect.sync(() => shardActors.delete(shard)))

      // The periodic scan and on-demand starts may race for one session: starts are serialised per shard, so a
      // session never gets two actors (and so never two sockets).
      const starting = yield* Effect.makeSemaphore(1)

      /** Starts the session's actor under supervision: a defect restarts it with backoff, alone. */
      const start = (sessionId: SessionId) =>
        Effect.gen(function*() {
          if (actors.has(sessionId)) return
          const actor = yield* SessionActor.make(sessionId, fence, options)
          actors.set(sessionId, actor.handle)
          const supervised = actor.run.pipe(
            Effect.catchTags({
              StaleEpoch: (error) =>
                Effect.logWarning("fenced out: another node owns this shard now").pipe(
                  Effect.annotateLogs({ current: String(error.current) })
                ),
              Replaced: () => Effect.void,
              Unlinked: () => Effect.void
            }),
            Effect.tapErrorCause((cause) =>
              Cause.isInterruptedOnly(cause)
                ? Effect.void
                : Effect.logError("session actor failed; restarting", cause)
            ),
            Effect.retry(SessionActor.supervisionSchedule),
            Effect.catchAllCause((cause) => Effect.logError("session actor gave up", cause)),
            Effect.ensuring(Effect.sync(() => {
              if (actors.get(sessionId) === actor.handle) actors.delete(sessionId)
            }))
          )
          yield* FiberMap.run(fibers, sessionId, supervised, { onlyIfMissing: true })
        }).pipe(starting.withPermits(1), Effect.provide(context))

      const scan = sessions.listRunningInShards([shard]).pipe(
        Effect.flatMap((rows) => Effect.forEach(rows, (row) => start(row.id), { concurrency: 8, discard: true }))
      )

      /**
       * The actor for a command, started on demand: a session created after the last scan, or a stopped one (which
       * the scans leave alone): its actor answers from its saved state and connects only when reconnected.
       */
      const actorFor = (sessionId: SessionId) => {
        const known = actors.get(sessionId)
        // Every command of a running session takes this path: no generator for it.
        return known !== undefined ? Effect.succeed(Option.some(known)) : startFor(sessionId)
      }
      const startFor = (sessionId: SessionId) =>
        Effect.gen(function*() {
          const record = yield* sessions.findById(sessionId)
          if (Option.isNone(record) || record.value.shard !== shard) return Option.none()
          yield* start(sessionId)
          return Option.fromNullable(actors.get(sessionId))
        })

      const ask = (
        command: SessionCommand
      ): Effect.Effect<Exit.Exit<unknown, CommandError | SendError | PairingError>> =>
        // Every command takes this path: combinators rather than a generator.
        Effect.flatMap(actorFor(command.sessionId), (actor) =>
          Option.isNone(actor)
            ? Effect.succeed(Exit.fail(new SessionUnknown({ sessionId: command.sessionId })))
            : Effect.async<Exit.Exit<unknown, CommandError | SendError | PairingError>>((resume) =>
              postWithin(actor.value, command, (exit) => resume(Effect.succeed(exit)))
            )).pipe(
            // Postgres failing or slow (reading the session to start its actor): a typed answer the gateway turns
            // into 503 + Retry-After, not a defect (a 500 to the caller).
            Effect.catchAll((error) =>
              Effect.as(
                Effect.logWarning("command not answered: storage unavailable", error),
                Exit.fail(new StorageUnavailable({ sessionId: command.sessionId }))
              )
            ),
            withHotSpan("SessionHost.ask", { attributes: { command: command._tag, sessionId: command.sessionId } })
          )

      const serveRequest = (payload: Uint8Array) =>
        decodeCommand(utf8Decoder.decode(payload)).pipe(
          Effect.flatMap((command) => Effect.flatMap(ask(command), (exit) => replyText(command, exit))),
          Effect.catchAll((error) =>
            Effect.as(
              Effect.logWarning("malformed command", error),
              JSON.stringify({ _tag: "Failure", cause: { _tag: "Die", defect: `malformed command: ${error.message}` } })
            )
          ),
          Effect.map((text) => utf8Encoder.encode(text))
        )

      /**
       * A command that the hand-written codec reads (a queued text) for an actor that runs, outside Effect: posted to
       * the actor, whose answer (or SessionBusy once the ask timeout has passed) is the reply; a success is written by
       * hand, anything else by `replyText` in a fiber. Anything else goes to `serveRequest`, as does every command
       * while tracing is on (its span is there).
       */
      const serveDirect: DirectHandler = (payload, respond) => {
        if (tracing) return false
        const command = readCommand(utf8Decoder.decode(payload))
        if (command === undefined) return false
        const actor = actors.get(command.sessionId)
        if (actor === undefined) return false
        postWithin(actor, command, (exit) => {
          const text = writeReply(command, exit)
          if (text !== undefined) return respond(utf8Encoder.encode(text))
          runFork(replyText(command, exit)).addObserver((encoded) => {
            if (Exit.isSuccess(encoded)) respond(utf8Encoder.encode(encoded.value))
          })
        })
        return true
      }

      // The first scan is retried like the fence; commands start their session's actor on demand meanwhile.
      yield* nats.serve(rpcSubject(shard), serveRequest, serveDirect)
      yield* scan.pipe(
        Effect.tapError((error) => Effect.logWarning("could not list the shard's sessions; retrying", error)),
        Effect.retry(Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("2 seconds"))))
      )
      yield* scan.pipe(
        Effect.catchAll((error) => Effect.logWarning("shard rescan failed", error)),
        Effect.repeat(Schedule.spaced(options.rescanEvery)),
        Effect.forkScoped
      )
      yield* Effect.logDebug("shard started").pipe(Effect.annotateLogs({ sessions: actors.size }))
    }).pipe(
      Effect.catchAll((error) => Effect.logError("could not start shard", error)),
      Effect.annotateLogs({ shard, epoch })
    )

  /**
   * Publishes each session's events in order; a session whose publish fails keeps the rest of its events for the next
   * round (its order intact). Answers the events that made it into the stream.
   */
  const publishInOrder = (batch: ReadonlyArray<PendingEvent>) =>
    Effect.gen(function*() {
      const bySession = new Map<string, Array<PendingEvent>>()
      for (const event of batch) {
        const list = bySession.get(event.sessionId)
        if (list === undefined) bySession.set(event.sessionId, [event])
        else list.push(event)
      }
      const published: Array<number> = []
      yield* Effect.forEach(bySession.values(), (list) =>
        Effect.gen(function*() {
          for (const event of list) {
            const envelope = JSON.stringify({
              id: event.id,
              type: event.type,
              timestamp: event.createdAt.toISOString(),
              tenantId: event.tenantId,
              data: event.data
            })
            const stored = yield* stream.publish(
              eventSubject(event.tenantId, event.sessionId, event.type),
              new TextEncoder().encode(envelope),
              event.id
            ).pipe(
              Effect.as(true),
              Effect.catchAll((error) =>
                Effect.as(Effect.logWarning("an event could not be published yet", error), false)
              )
            )
            if (!stored) return
            published.push(event.seq)
          }
        }), { concurrency: 32, discard: true })
      return published
    })

  /**
   * The relay: publishes the events of the shards this node runs, oldest first, then forgets them. An event that
   * was published but not yet forgotten when its node died is published again by the shard's next owner; the
   * stream drops the repeat (same id).
   */
  const relay = Effect.gen(function*() {
    while (true) {
      const shards = Array.from(shardActors.keys())
      const batch = shards.length === 0 ? [] : yield* events.pending(shards, RELAY_BATCH)
      if (batch.length === 0) {
        yield* Effect.raceFirst(Queue.take(relayWake), Effect.sleep(RELAY_POLL))
        continue
      }
      const published = yield* publishInOrder(batch)
      yield* events.published(published)
      // NATS trouble: a pause before the next round rather than a tight loop.
      if (published.length < batch.length) yield* Effect.sleep(Duration.seconds(1))
    }
  }).pipe(
    Effect.catchAll((error) =>
      Effect.zipRight(Effect.logWarning("event relay failed; restarting it", error), Effect.sleep("1 second"))
    ),
    Effect.forever
  )
  yield* Effect.forkScoped(relay)

  return {
    lifecycle: ShardLifecycle.of({ run: runShard }),
    host: SessionHost.of({
      running: Effect.sync(() => new Map(Array.from(shardActors, ([shard, actors]) => [shard, actors.size])))
    })
  }
})

export const layer = (options: HostOptions) =>
  Layer.scopedContext(
    Effect.map(make(options), ({ host, lifecycle }) =>
      Context.make(ShardLifecycle, lifecycle).pipe(Context.add(SessionHost, host)))
  )

export const layerConfig = Layer.unwrapEffect(Effect.map(hostConfig, layer))
