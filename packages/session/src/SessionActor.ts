/**
 * One session's actor: the only writer of that session's live state on the node that owns its shard.
 * It runs the WhatsApp socket (connect, events, reconnect with backoff) and answers commands from a
 * bounded mailbox, one at a time, each to the reply its caller gave. Every write it makes to Postgres is fenced with
 * the shard epoch; a stale epoch means another node owns the shard now, and the actor stops.
 */
import { SqlClient } from "@effect/sql"
import { monotonicMillis } from "@wacluster/cluster/ClusterConfig"
import { findCity } from "@wacluster/domain/Cities"
import type { EventType } from "@wacluster/domain/Events"
import { makeEventId, makeMessageId, type SessionId } from "@wacluster/domain/Ids"
import { isPersonalJid, phoneOfJid } from "@wacluster/domain/Jid"
import * as Mailbox from "@wacluster/domain/Mailbox"
import {
  AcceptedMessage,
  type Caller,
  NotConnected,
  NotOwner,
  PairingCode,
  RateLimited,
  SendFailed,
  SentText,
  SessionBusy,
  StorageUnavailable,
  Unlinked as UnlinkedView
} from "@wacluster/domain/Protocol"
import type { CommandError, PairingError, SendError, SessionCommand } from "@wacluster/domain/Protocol"
import type { SessionReason, SessionStatus } from "@wacluster/domain/Session"
import { mapStoreError } from "@wacluster/store/Errors"
import { Events, type NewEvent } from "@wacluster/store/Events"
import type { Fence } from "@wacluster/store/Fence"
import { Messages } from "@wacluster/store/Messages"
import { Outbox } from "@wacluster/store/Outbox"
import { type RuntimeState, SessionRuntime } from "@wacluster/store/SessionRuntime"
import { Sessions } from "@wacluster/store/Sessions"
import { ProxyConfig } from "@wacluster/whatsapp/ProxyConfig"
import * as SessionProxy from "@wacluster/whatsapp/SessionProxy"
import { WhatsAppDriver } from "@wacluster/whatsapp/WhatsAppDriver"
import type { CloseReason, SocketEvent, WhatsAppSocket } from "@wacluster/whatsapp/WhatsAppDriver"
import { Data, DateTime, Deferred, Duration, Effect, Exit, Option, Queue, Schedule, Stream } from "effect"
import { type BackoffPolicy, nextDelay } from "./Backoff.js"
import type { ConnectGate } from "./ConnectGate.js"
import { healthView, type LiveState, pairingUnavailable, qrView, statusView } from "./LiveState.js"
import * as RateLimiter from "./RateLimiter.js"
import { makeWindow, type RestartIntensityPolicy } from "./RestartIntensity.js"

export interface ActorOptions {
  readonly mailboxCapacity: number
  readonly backoff: BackoffPolicy
  /** More restarts than this within the window park the session as `disconnected/failing`. */
  readonly intensity: RestartIntensityPolicy
  /** How often counters and activity are saved when they changed since the last save. */
  readonly persistEvery: Duration.Duration
  /**
   * How often uptime is saved when nothing else changed: a node with thousands of idle sessions otherwise writes
   * each of them every `persistEvery` for the clock alone.
   */
  readonly persistIdleEvery: Duration.Duration
  /** The least time between two queued texts this session sends (per-session pacing). */
  readonly sendInterval: Duration.Duration
  /** A queued text not sent within this time fails (the session stayed disconnected, or WhatsApp never took it). */
  readonly queueMaxAge: Duration.Duration
  /** Called after every commit that wrote events, so the node publishes them without waiting for its next look. */
  readonly eventsCommitted: Effect.Effect<void>
  /** The session's rate limits unless it has its own (see RateLimiter). */
  readonly rateLimits: { readonly requestsPerMinute: number; readonly messagesPerHour: number }
  /**
   * Shared by the node's actors: a permit is held from connecting until the socket's first event (QR, open or
   * close). A WhatsApp handshake and its first queries cost CPU; a node that takes over a thousand sessions at once
   * must not stall its event loop (and with it its lease renewals).
   */
  readonly connectGate: ConnectGate
  /** Waited for once a connect has its turn at the gate: returns once the node's event loop keeps up. */
  readonly connectHeadroom: Effect.Effect<void>
  /**
   * Whether this node still holds the session's shard, asked of NATS: after WhatsApp says another login replaced
   * this one (440), an actor whose shard moved stops instead of fighting the new owner for the device.
   */
  readonly leaseHeld: Effect.Effect<boolean>
}

/** WhatsApp replaced this login and the shard belongs to another node now: the actor stops for good. */
export class Replaced extends Data.TaggedError("Replaced")<{ readonly sessionId: SessionId }> {}

/** The session was unlinked before its deletion: the actor stops for good. */
export class Unlinked extends Data.TaggedError("Unlinked")<{ readonly sessionId: SessionId }> {}

/** Where a command's answer goes: called once, by the actor (or as it stops); it must not throw. */
export type Reply = (exit: Exit.Exit<unknown, CommandError | SendError | PairingError>) => void

interface Envelope {
  readonly command: SessionCommand
  readonly reply: Reply
}

export interface SessionActorHandle {
  readonly sessionId: SessionId
  /**
   * Queues a command whose answer goes to `reply`, outside Effect: undefined once queued, else why not: `SessionBusy`
   * when the mailbox is full, `NotOwner` once the actor has stopped (the caller retries at the next owner). What the
   * node answers a running session's sends with, no fiber of its own for each.
   */
  readonly post: (command: SessionCommand, reply: Reply) => SessionBusy | NotOwner | undefined
  /** `post` for a caller in Effect: where the answer will appear, or why the command was not queued. */
  readonly offer: (command: SessionCommand) => Effect.Effect<
    Deferred.Deferred<unknown, CommandError | SendError | PairingError>,
    SessionBusy | NotOwner
  >
}

/** A session's two rate limits: requests per minute, and texts queued per hour. */
type LimitKind = RateLimited["kind"]
const LIMIT_KINDS: ReadonlyArray<LimitKind> = ["requests", "messages"]
const WINDOW_MS: Record<LimitKind, number> = { requests: 60_000, messages: 3_600_000 }

/** How long unlinking waits for WhatsApp: a logout over the live socket, or a login with saved credentials. */
const UNLINK_LOGIN_TIMEOUT = Duration.seconds(15)

const wallClock = Effect.map(Effect.clockWith((clock) => clock.currentTimeMillis), (ms) => new Date(ms))

/** What the connection loop does after a socket closed. */
const afterClose = (reason: CloseReason): { status: SessionStatus; reason: SessionReason; retry: boolean } => {
  switch (reason) {
    case "restart_required":
      return { status: "connecting", reason: "reconnecting", retry: true }
    case "connection_lost":
      return { status: "disconnected", reason: "connection_lost", retry: true }
    case "proxy_unreachable":
      return { status: "disconnected", reason: "proxy_unreachable", retry: true }
    case "qr_timeout":
      return { status: "expired", reason: "qr_timeout", retry: false }
    case "logged_out":
      return { status: "disconnected", reason: "logged_out", retry: false }
    case "conflict":
      return { status: "disconnected", reason: "conflict", retry: false }
  }
}

/**
 * Builds the actor and returns its handle with the effect that runs it. The run effect only ends by
 * interruption or by failing (a fenced write was rejected, or a defect); the host supervises it.
 */
export const make = Effect.fn("SessionActor.make")(function*(
  sessionId: SessionId,
  fence: Fence,
  options: ActorOptions
) {
  const runtime = yield* SessionRuntime
  const sessions = yield* Sessions
  const messages = yield* Messages
  const outbox = yield* Outbox
  const events = yield* Events
  const sql = yield* SqlClient.SqlClient
  const proxyConfig = yield* ProxyConfig
  const driver = yield* WhatsAppDriver
  const mailbox = Mailbox.make<Envelope>(options.mailboxCapacity)

  // Every command passes here: plain calls.
  const post = (command: SessionCommand, reply: Reply) => {
    const offered = mailbox.offer({ command, reply })
    if (offered === "queued") return undefined
    return offered === "full" ? new SessionBusy({ sessionId }) : new NotOwner({ shard: fence.shard })
  }
  const handle: SessionActorHandle = {
    sessionId,
    post,
    offer: (command) =>
      Effect.fiberIdWith((fiberId) => {
        const answer = Deferred.unsafeMake<unknown, CommandError | SendError | PairingError>(fiberId)
        const refused = post(command, (exit) => Deferred.unsafeDone(answer, exit))
        return refused === undefined ? Effect.succeed(answer) : Effect.fail(refused)
      })
  }

  const run = Effect.gen(function*() {
    const record = yield* sessions.findById(sessionId)
    if (Option.isNone(record)) return yield* Effect.logInfo("session no longer exists; not starting it")
    const city = yield* Option.match(findCity(record.value.city), {
      onNone: () =>
        Effect.dieMessage(`session ${sessionId} has city ${record.value.city}, which is not in the catalog`),
      onSome: Effect.succeed
    })
    const stored = yield* runtime.load(sessionId)
    const proxy = yield* SessionProxy.make(proxyConfig, {
      sessionId,
      city,
      sticky: Option.match(stored, { onNone: () => undefined, onSome: (r) => r.proxySticky ?? undefined })
    })
    const startedAt = yield* monotonicMillis
    /** The tenant stopped the session: no socket until a Reconnect (also across owners: it is in Postgres). */
    let stopped = record.value.desiredState === "stopped"
    const state: LiveState = {
      status: stopped ? "disconnected" : "connecting",
      reason: stopped ? "stopped" : "reconnecting",
      connectedAt: null,
      phoneNumber: Option.match(stored, { onNone: () => null, onSome: (r) => r.phoneNumber }),
      lastActivityAt: Option.match(stored, { onNone: () => null, onSome: (r) => r.lastActivityAt }),
      qr: null,
      qrExpiresAt: null,
      messagesSent: Option.match(stored, { onNone: () => 0, onSome: (r) => r.messagesSent }),
      messagesReceived: Option.match(stored, { onNone: () => 0, onSome: (r) => r.messagesReceived }),
      connectedMs: Option.match(stored, { onNone: () => 0, onSome: (r) => r.connectedMs }),
      observedMs: Option.match(stored, { onNone: () => 0, onSome: (r) => r.observedMs }),
      since: startedAt
    }

    const tenantId = record.value.tenantId
    /** An event of this session (see the Events module of the domain). */
    const newEvent = (type: EventType, data: Record<string, unknown> = {}) =>
      Effect.map(makeEventId, (id): NewEvent => ({ id, tenantId, type, data: { ...data, sessionId } }))
    /** The events of a change of status: always session.status, and what the change means. */
    const statusEvents = (
      previous: { readonly status: SessionStatus; readonly reason: SessionReason | null },
      next: { readonly status: SessionStatus; readonly reason: SessionReason | null }
    ) =>
      Effect.all([
        newEvent("session.status", {
          status: next.status,
          reason: next.reason,
          previousStatus: previous.status,
          previousReason: previous.reason
        }),
        ...(next.status === "connected" && previous.status !== "connected"
          ? [newEvent("session.socket-connected", { phoneNumber: state.phoneNumber })]
          : []),
        ...(previous.status === "connected" && next.status !== "connected"
          ? [newEvent("session.socket-disconnected", { reason: next.reason })]
          : []),
        ...(next.status === "expired" ? [newEvent("session.expired", { reason: next.reason })] : []),
        ...(next.reason === "logged_out" ? [newEvent("session.logged-out")] : [])
      ])

    /**
     * Commits `change` and the events it calls for in one transaction: an event exists exactly when its change was
     * committed, and is published after.
     */
    const committed = <A, E, R>(
      change: Effect.Effect<A, E, R>,
      eventsOf: (result: A) => Effect.Effect<ReadonlyArray<NewEvent>>
    ) =>
      Effect.gen(function*() {
        let wrote = false
        const result = yield* sql.withTransaction(
          Effect.flatMap(change, (result) =>
            Effect.flatMap(eventsOf(result), (news) => {
              wrote = news.length > 0
              return Effect.as(wrote ? events.append(fence, news) : Effect.void, result)
            }))
        ).pipe(mapStoreError("SessionActor.commit"))
        if (wrote) yield* options.eventsCommitted
        return result
      })
    /** Events that stand alone (no change of rows with them): one statement, no transaction. */
    const emit = (news: ReadonlyArray<NewEvent>) => Effect.zipRight(events.append(fence, news), options.eventsCommitted)

    /** The session's limits (its own, else the node's), and its buckets and those of the keys used on it. */
    const limits: Record<LimitKind, number> = {
      requests: record.value.requestsPerMinute ?? options.rateLimits.requestsPerMinute,
      messages: record.value.messagesPerHour ?? options.rateLimits.messagesPerHour
    }
    const quotaOf = (kind: LimitKind, limit: number): RateLimiter.Quota => ({ limit, windowMs: WINDOW_MS[kind] })
    const sessionBuckets = { requests: RateLimiter.emptyBucket(), messages: RateLimiter.emptyBucket() }
    const keyBuckets = new Map<string, { requests: RateLimiter.Bucket; messages: RateLimiter.Bucket }>()
    const bucketsOf = (caller: Caller) => {
      if (caller.keyId === null) return undefined
      let buckets = keyBuckets.get(caller.keyId)
      if (buckets === undefined) {
        // A session has a handful of keys; a bound all the same.
        if (keyBuckets.size >= 1_000) keyBuckets.clear()
        buckets = { requests: RateLimiter.emptyBucket(), messages: RateLimiter.emptyBucket() }
        keyBuckets.set(caller.keyId, buckets)
      }
      return buckets
    }
    /** The limits a caller's request (or queued text) counts against. */
    const limitsFor = (caller: Caller, kind: LimitKind) => {
      const all: Array<{ bucket: RateLimiter.Bucket; quota: RateLimiter.Quota; scope: "session" | "key" }> = [
        { bucket: sessionBuckets[kind], quota: quotaOf(kind, limits[kind]), scope: "session" }
      ]
      const own = kind === "requests" ? caller.requestsPerMinute : caller.messagesPerHour
      const keyBucket = bucketsOf(caller)
      if (own !== null && keyBucket !== undefined) {
        all.push({ bucket: keyBucket[kind], quota: quotaOf(kind, own), scope: "key" })
      }
      return all
    }
    const refusal = (
      kind: LimitKind,
      entry: { readonly quota: RateLimiter.Quota; readonly scope: "session" | "key" },
      verdict: RateLimiter.Verdict
    ) =>
      new RateLimited({
        sessionId,
        kind,
        scope: entry.scope,
        limit: entry.quota.limit,
        windowSeconds: entry.quota.windowMs / 1000,
        retryAfterMs: verdict.retryAfterMs,
        resetMs: verdict.resetMs
      })
    /** Counts a request against its caller's limits; the refusal when one is reached (nothing counted then). */
    const admitRequest = (caller: Caller | undefined) =>
      Effect.map(monotonicMillis, (now) => {
        if (caller === undefined) return undefined
        const applicable = limitsFor(caller, "requests")
        const result = RateLimiter.admit(applicable, now)
        const entry = result === undefined ? undefined : applicable[result.index]
        if (result === undefined || result.verdict.allowed || entry === undefined) return undefined
        return refusal("requests", entry, result.verdict)
      })

    /** Folds the time since the last accounting point into the totals. */
    const account = Effect.map(monotonicMillis, (now) => {
      const elapsed = Math.max(0, now - state.since)
      state.observedMs += elapsed
      if (state.status === "connected") state.connectedMs += elapsed
      state.since = now
    })

    /**
     * One save at a time, each reading the state when it gets its turn: two saves in flight at once (the periodic one
     * and a status change's) could commit in the other order and leave the older state saved.
     */
    const saving = yield* Effect.makeSemaphore(1)

    /** What the last save wrote apart from the clock (uptime), and when (monotonic). */
    const lastSave = { fingerprint: "", at: 0 }
    const fingerprintOf = (saved: RuntimeState) =>
      [
        saved.status,
        saved.reason,
        saved.connectedAt?.getTime(),
        saved.phoneNumber,
        saved.lastActivityAt?.getTime(),
        saved.messagesSent,
        saved.messagesReceived,
        saved.proxySticky
      ].join("|")

    /** The live state as saved; accounts the time since the last accounting point first. */
    const snapshot = Effect.gen(function*() {
      yield* account
      return {
        sessionId,
        status: state.status,
        reason: state.reason,
        connectedAt: state.connectedAt,
        phoneNumber: state.phoneNumber,
        lastActivityAt: state.lastActivityAt,
        messagesSent: state.messagesSent,
        messagesReceived: state.messagesReceived,
        connectedMs: state.connectedMs,
        observedMs: state.observedMs,
        proxySticky: proxy.enabled ? yield* proxy.sticky : null
      } satisfies RuntimeState
    })

    /** Saves `saved`, with the events of the change that made it; the caller holds `saving`. */
    const write = (saved: RuntimeState, news: ReadonlyArray<NewEvent>) =>
      Effect.gen(function*() {
        const save = runtime.save(fence, saved)
        // A save without events (the periodic one) needs no transaction around it.
        yield* (news.length === 0 ? save : committed(save, () => Effect.succeed(news))).pipe(storeRetry)
        lastSave.fingerprint = fingerprintOf(saved)
        lastSave.at = yield* monotonicMillis
      }).pipe(Effect.withSpan("SessionActor.persist"))

    /** Saves the live state, with the events of the change that made it; the caller holds `saving`. */
    const persistHeld = (news: ReadonlyArray<NewEvent>) => Effect.flatMap(snapshot, (saved) => write(saved, news))
    /** Saves the live state (news that is not a status change). */
    const persist = saving.withPermits(1)(persistHeld([]))
    /** The periodic save: only what changed since the last save, or uptime once `persistIdleEvery` has passed. */
    const persistIfDue = saving.withPermits(1)(Effect.gen(function*() {
      const saved = yield* snapshot
      const idleFor = (yield* monotonicMillis) - lastSave.at
      if (fingerprintOf(saved) === lastSave.fingerprint && idleFor < Duration.toMillis(options.persistIdleEvery)) return
      yield* write(saved, [])
    }))

    /** Moves to a new status; a change is saved with its events before any other save can read the state. */
    const transition = (status: SessionStatus, reason: SessionReason | null) =>
      Effect.gen(function*() {
        yield* account
        const changed = state.status !== status || state.reason !== reason
        const previous = { status: state.status, reason: state.reason }
        state.status = status
        state.reason = reason
        if (status !== "connected") state.connectedAt = null
        // A QR code is only good while the session waits for a scan.
        if (reason !== "qr_pending") {
          state.qr = null
          state.qrExpiresAt = null
        }
        if (changed) {
          yield* Effect.logInfo("session status").pipe(Effect.annotateLogs({ status, reason: reason ?? "" }))
          yield* persistHeld(yield* statusEvents(previous, { status, reason }))
        }
        return changed
      }).pipe(saving.withPermits(1))

    const onEvent = (event: SocketEvent) =>
      Effect.gen(function*() {
        switch (event._tag) {
          case "Qr":
            state.qr = event.qr
            state.qrExpiresAt = event.expiresAt
            yield* transition("connecting", "qr_pending")
            // Not the code itself: whoever reads the events must not be able to link a phone of their own with it.
            yield* emit([yield* newEvent("session.qr-updated", { expiresAt: event.expiresAt.toISOString() })]).pipe(
              storeRetry
            )
            return
          case "Open":
            yield* account
            state.connectedAt = yield* wallClock
            state.phoneNumber = event.phoneNumber
            // The phone number and connection time are news even if the status were not.
            if (!(yield* transition("connected", null))) yield* persist
            yield* Queue.offer(outboxWake, undefined)
            return
          case "MessageReceived": {
            const messageId = yield* makeMessageId
            const received = {
              messageId,
              from: event.from,
              phoneNumber: phoneOfJid(event.from),
              text: event.text,
              waMessageId: event.waMessageId,
              timestamp: event.timestamp.toISOString()
            }
            const recorded = yield* committed(
              messages.insert(fence, {
                id: messageId,
                sessionId,
                direction: "inbound",
                remoteJid: event.from,
                body: { text: event.text },
                status: "received",
                waMessageId: event.waMessageId
              }),
              (inserted) =>
                inserted
                  ? Effect.all([
                    newEvent("message.received", received),
                    ...(isPersonalJid(event.from) ? [newEvent("message-personal.received", received)] : [])
                  ])
                  : Effect.succeed([])
            ).pipe(storeRetry)
            // WhatsApp may deliver a message again after a reconnect: it is counted once.
            if (recorded) {
              state.messagesReceived++
              state.lastActivityAt = event.timestamp
            }
            return
          }
          case "Receipt":
            yield* committed(
              messages.recordReceipt(fence, sessionId, event.waMessageId, event.status),
              Option.match({
                onNone: () => Effect.succeed<ReadonlyArray<NewEvent>>([]),
                onSome: (messageId) =>
                  Effect.all([
                    newEvent(event.status === "read" ? "message.read" : "message.delivered", {
                      messageId,
                      waMessageId: event.waMessageId,
                      at: event.at.toISOString()
                    })
                  ])
              })
            ).pipe(storeRetry)
            return
          case "Closed":
            // What WhatsApp or the socket said (a timeout, a lost connection, a stream error): the status says less.
            return yield* Effect.logInfo("socket closed").pipe(
              Effect.annotateLogs({ reason: event.reason, detail: event.detail })
            )
        }
      })

    /** The live socket while one is open (commands send through it). */
    let current: WhatsAppSocket | null = null
    /** Wakes the connection loop out of a backoff, a park or a final state (the Reconnect command). */
    const wake = yield* Queue.sliding<void>(1)
    /** Wakes the outbox loop: a text was queued, or the session connected. */
    const outboxWake = yield* Queue.sliding<void>(1)
    /** Interrupts whatever the connection loop is doing (connected, connecting, backing off) for a stop. */
    const stopSignal = yield* Queue.sliding<void>(1)
    /** Stop commands waiting for the socket to be closed and the stop recorded. */
    const stopWaiters: Array<Deferred.Deferred<void>> = []

    const connectOnce = Effect.scoped(
      Effect.gen(function*() {
        let gated = false
        const leaveGate = Effect.suspend(() => {
          if (!gated) return Effect.void
          gated = false
          return options.connectGate.release
        })
        // The wait for a turn is interruptible; a permit once handed over is always given back.
        yield* Effect.uninterruptibleMask((restore) =>
          restore(options.connectGate.take).pipe(
            Effect.zipRight(Effect.sync(() => (gated = true))),
            Effect.zipRight(Effect.addFinalizer(() => leaveGate))
          )
        )
        yield* options.connectHeadroom
        const socket = yield* driver.connect({ sessionId, fence, proxy })
        current = socket
        yield* Effect.addFinalizer(() => Effect.sync(() => (current = null)))
        // A stream that ends without a Closed event means the socket vanished: treat it as a lost connection.
        const closed: { reason: CloseReason } = { reason: "connection_lost" }
        yield* socket.events.pipe(
          Stream.runForEach((event) => {
            if (event._tag === "Closed") closed.reason = event.reason
            return Effect.zipRight(leaveGate, onEvent(event))
          })
        )
        return closed.reason
      })
    ).pipe(
      Effect.catchTag("DriverError", (error) =>
        Effect.as(
          Effect.logWarning("connect failed").pipe(Effect.annotateLogs({ error: error.message })),
          "connection_lost" as const
        ))
    )

    const restarts = makeWindow(options.intensity)

    /** Waits before the next connect: backoff, or a long park when the session keeps failing. */
    const pause = (previous: Duration.Duration | undefined) =>
      Effect.gen(function*() {
        if (!restarts.record(yield* monotonicMillis)) {
          const delay = yield* nextDelay(options.backoff, previous)
          yield* Effect.raceFirst(Effect.sleep(delay), Queue.take(wake))
          return delay
        }
        yield* transition("disconnected", "failing")
        yield* Effect.logWarning("session keeps failing; parked before the next attempt").pipe(
          Effect.annotateLogs({
            restarts: options.intensity.maxRestarts + 1,
            within: Duration.format(options.intensity.within),
            parkedFor: Duration.format(options.intensity.parkFor)
          })
        )
        yield* Effect.raceFirst(Effect.sleep(options.intensity.parkFor), Queue.take(wake))
        restarts.reset()
        return undefined
      })

    /** Connects and keeps the session connected; returns only by failing (Replaced) or being interrupted. */
    const connected = Effect.gen(function*() {
      let delay: Duration.Duration | undefined
      while (true) {
        const reason = yield* connectOnce
        if (reason === "conflict" && !(yield* options.leaseHeld)) {
          yield* Effect.logWarning("replaced by the shard's new owner; stopping")
          return yield* new Replaced({ sessionId })
        }
        const next = afterClose(reason)
        // A proxy that failed gets a new exit (a new sticky token) for the next attempt; backoff still applies.
        if (reason === "proxy_unreachable" && proxy.enabled) {
          const sticky = yield* proxy.rotate
          yield* Effect.logWarning("proxy failed; rotated to a new exit").pipe(Effect.annotateLogs({ sticky }))
        }
        if (state.status === "connected") delay = undefined
        // Logged out: no longer linked to any phone.
        if (reason === "logged_out") state.phoneNumber = null
        yield* transition(next.status, next.reason)
        if (reason === "logged_out") yield* driver.forget(sessionId).pipe(Effect.ignore)
        if (!next.retry) {
          // Final until someone asks: a logged-out or expired session waits for Reconnect (then shows a new QR).
          yield* Queue.take(wake)
          restarts.reset()
          delay = undefined
          yield* transition("connecting", "reconnecting")
          continue
        }
        if (reason === "restart_required") continue
        delay = yield* pause(delay)
        yield* transition("connecting", "reconnecting")
      }
    })

    /** Runs `connected` until the session is stopped, then waits (socket closed) until a Reconnect resumes it. */
    const connectionLoop = Effect.gen(function*() {
      while (true) {
        if (stopped) {
          yield* transition("disconnected", "stopped")
          for (const waiter of stopWaiters.splice(0)) yield* Deferred.succeed(waiter, undefined)
          while (stopped) yield* Queue.take(wake)
          restarts.reset()
          yield* transition("connecting", "reconnecting")
        }
        yield* Queue.takeAll(stopSignal)
        // The stop wins the race by interrupting `connected`, which closes its socket first (its scope).
        yield* Effect.raceFirst(connected, Queue.take(stopSignal))
      }
    })

    /** Stops the session (see StopSession) and waits until its socket is closed and the stop recorded. */
    const stop = Effect.gen(function*() {
      if (stopped && state.reason === "stopped") return
      const done = yield* Deferred.make<void>()
      stopWaiters.push(done)
      stopped = true
      yield* Queue.offer(stopSignal, undefined)
      yield* Deferred.await(done)
    })

    /**
     * Logs in once with the saved credentials only to remove the linked device (the session is stopped: no other
     * socket runs). Says why not when it could not.
     */
    const logoutWithSavedCredentials = Effect.scoped(
      Effect.gen(function*() {
        const socket = yield* options.connectGate.withPermit(
          Effect.zipRight(options.connectHeadroom, driver.connect({ sessionId, fence, proxy }))
        )
        const first = yield* socket.events.pipe(
          Stream.filter((event) => event._tag === "Open" || event._tag === "Qr" || event._tag === "Closed"),
          Stream.runHead
        )
        if (Option.isNone(first) || first.value._tag === "Qr") {
          return { deviceUnlinked: false, detail: "no saved credentials: the session was not linked" }
        }
        if (first.value._tag === "Closed") {
          return {
            deviceUnlinked: false,
            detail: `WhatsApp did not accept the saved credentials (${first.value.reason})`
          }
        }
        yield* socket.logout
        return { deviceUnlinked: true, detail: null }
      })
    ).pipe(
      Effect.timeout(UNLINK_LOGIN_TIMEOUT),
      Effect.catchAll((error) =>
        Effect.succeed({
          deviceUnlinked: false,
          detail: error._tag === "TimeoutException"
            ? `WhatsApp did not answer within ${Duration.format(UNLINK_LOGIN_TIMEOUT)}`
            : `could not reach WhatsApp: ${error.message}`
        })
      )
    )

    /**
     * Sends the durable queue, oldest first, while connected, one text per `sendInterval`. A text keeps the WhatsApp
     * id of its first attempt, so an attempt repeated after a lost connection (or by the shard's next owner after a
     * crash) is the same message. WhatsApp refusing a text fails it; a failure of the path leaves it queued.
     */
    const outboxLoop = Effect.gen(function*() {
      const maxAgeMs = Duration.toMillis(options.queueMaxAge)
      while (true) {
        const socket = current
        if (socket === null || state.status !== "connected") {
          yield* Queue.take(outboxWake)
          continue
        }
        // One indexed read per wake (every login wakes this loop); the expiry write only when the oldest text
        // waiting is past OUTBOX_MAX_AGE.
        const batch = yield* outbox.next(sessionId, 32).pipe(storeRetry)
        if (batch.length === 0) {
          yield* Queue.take(outboxWake)
          continue
        }
        const cutoff = new Date((yield* wallClock).getTime() - maxAgeMs)
        if (batch[0] !== undefined && batch[0].createdAt < cutoff) {
          const reason = `not sent within ${Duration.format(options.queueMaxAge)} (OUTBOX_MAX_AGE)`
          const expired = yield* committed(
            outbox.expire(fence, sessionId, cutoff, reason),
            (ids) => Effect.forEach(ids, (messageId) => newEvent("message.failed", { messageId, reason }))
          ).pipe(storeRetry)
          yield* Effect.logWarning("queued texts expired unsent").pipe(
            Effect.annotateLogs({ expired: expired.length })
          )
          continue
        }
        for (const text of batch) {
          if (current !== socket || state.status !== "connected") break
          const waMessageId = text.waMessageId ?? (yield* socket.newMessageId)
          if (text.waMessageId === null) {
            yield* outbox.assignWaMessageId(fence, text.id, waMessageId).pipe(storeRetry)
          }
          const sent = yield* socket.sendText(text.remoteJid, text.text, waMessageId).pipe(Effect.either)
          if (sent._tag === "Right") {
            // WhatsApp has it: counted even when a receipt got to the row first.
            yield* committed(
              outbox.markSent(fence, text.id),
              (moved) =>
                moved
                  ? Effect.all([
                    newEvent("message.sent", {
                      messageId: text.id,
                      to: text.remoteJid,
                      phoneNumber: phoneOfJid(text.remoteJid),
                      waMessageId
                    })
                  ])
                  : Effect.succeed([])
            ).pipe(storeRetry)
            state.messagesSent++
            state.lastActivityAt = yield* wallClock
          } else if (sent.left.refused === true) {
            const reason = sent.left.message
            yield* committed(
              outbox.markFailed(fence, text.id, reason),
              (moved) =>
                moved ? Effect.all([newEvent("message.failed", { messageId: text.id, reason })]) : Effect.succeed([])
            ).pipe(storeRetry)
          } else {
            yield* Effect.logWarning("send failed; the text stays queued").pipe(
              Effect.annotateLogs({ messageId: text.id, error: sent.left.message })
            )
            // The next attempt after a pause (or a reconnect), not in a tight loop.
            yield* Effect.raceFirst(Effect.sleep(Duration.seconds(1)), Queue.take(outboxWake))
            break
          }
          if (Duration.toMillis(options.sendInterval) > 0) yield* Effect.sleep(options.sendInterval)
        }
      }
    }).pipe(Effect.withSpan("SessionActor.outbox"))

    const succeed = (envelope: Envelope, value: unknown) => Effect.sync(() => envelope.reply(Exit.succeed(value)))
    const fail = (envelope: Envelope, error: CommandError | SendError | PairingError) =>
      Effect.sync(() => envelope.reply(Exit.fail(error)))

    const answer = (envelope: Envelope) =>
      Effect.gen(function*() {
        const { command } = envelope
        const refused = yield* admitRequest("caller" in command ? command.caller : undefined)
        if (refused !== undefined) return yield* fail(envelope, refused)
        switch (command._tag) {
          case "GetStatus":
            return yield* succeed(envelope, statusView(sessionId, state, yield* monotonicMillis))
          case "EnsureStarted":
            return yield* succeed(envelope, undefined)
          case "Reconnect":
            // Only a session that waits (backoff, park, or a final state) needs waking; one that is connecting
            // already is left to it.
            if (state.status === "disconnected" || state.status === "expired") {
              stopped = false
              yield* Queue.offer(wake, undefined)
              yield* transition("connecting", "reconnecting")
            }
            return yield* succeed(envelope, statusView(sessionId, state, yield* monotonicMillis))
          case "SendText": {
            const socket = current
            if (socket === null || state.status !== "connected") {
              return yield* fail(
                envelope,
                new NotConnected({ sessionId, status: state.status, reason: state.reason })
              )
            }
            const sent = yield* socket.sendText(command.to, command.text).pipe(Effect.either)
            if (sent._tag === "Left") {
              return yield* fail(envelope, new SendFailed({ sessionId, message: sent.left.message }))
            }
            const messageId = yield* makeMessageId
            yield* messages.insert(fence, {
              id: messageId,
              sessionId,
              direction: "outbound",
              remoteJid: command.to,
              body: { text: command.text },
              status: "sent",
              waMessageId: sent.right.waMessageId
            }).pipe(storeRetry)
            state.messagesSent++
            state.lastActivityAt = yield* wallClock
            return yield* succeed(
              envelope,
              new SentText({ messageId, waMessageId: sent.right.waMessageId })
            )
          }
          case "RequestPairingCode": {
            const socket = current
            if (socket === null || state.status !== "connecting" || state.reason !== "qr_pending") {
              return yield* fail(
                envelope,
                pairingUnavailable(
                  sessionId,
                  state,
                  state.status === "connected"
                    ? "the session is already linked"
                    : "the session is not waiting to be linked; reconnect it, then ask again once it shows a QR code"
                )
              )
            }
            const code = yield* socket.requestPairingCode(command.phoneNumber).pipe(Effect.either)
            if (code._tag === "Left") {
              return yield* fail(
                envelope,
                pairingUnavailable(sessionId, state, `WhatsApp did not issue a pairing code: ${code.left.message}`)
              )
            }
            return yield* succeed(
              envelope,
              new PairingCode({ sessionId, phoneNumber: command.phoneNumber, pairingCode: code.right })
            )
          }
          case "QueueText": {
            // Checked before, counted after: a repeated idempotency key queues nothing and counts nothing.
            const textLimits = command.caller === undefined ? [] : limitsFor(command.caller, "messages")
            const checkedAt = yield* monotonicMillis
            for (const entry of textLimits) {
              const verdict = RateLimiter.inspect(entry.bucket, entry.quota, checkedAt)
              if (!verdict.allowed) return yield* fail(envelope, refusal("messages", entry, verdict))
            }
            const queued = yield* outbox.enqueue(fence, {
              id: yield* makeMessageId,
              sessionId,
              remoteJid: command.to,
              text: command.text,
              idempotencyKey: command.idempotencyKey ?? undefined
            }).pipe(Effect.either)
            if (queued._tag === "Left") {
              if (queued.left._tag === "StoreError") {
                return yield* fail(envelope, new StorageUnavailable({ sessionId }))
              }
              // Another node owns the session now: the caller retries there, and this actor stops.
              yield* fail(envelope, new NotOwner({ shard: fence.shard }))
              return yield* queued.left
            }
            if (!queued.right.repeated) {
              for (const entry of textLimits) RateLimiter.take(entry.bucket, entry.quota, checkedAt)
              // Until the session is connected the outbox loop only waits: the login wakes it, and it reads the
              // queue then (this text is in it already).
              if (current !== null && state.status === "connected") yield* Queue.offer(outboxWake, undefined)
            }
            return yield* succeed(
              envelope,
              new AcceptedMessage({
                messageId: queued.right.messageId,
                status: queued.right.status,
                createdAt: DateTime.unsafeFromDate(queued.right.createdAt)
              }, { disableValidation: true })
            )
          }
          case "GetHealth": {
            const queue = yield* outbox.depth(sessionId).pipe(Effect.either)
            if (queue._tag === "Left") {
              return yield* fail(envelope, new StorageUnavailable({ sessionId }))
            }
            return yield* succeed(
              envelope,
              healthView(sessionId, state, queue.right, yield* proxy.health, yield* wallClock)
            )
          }
          case "GetQr":
            return yield* succeed(envelope, qrView(sessionId, state))
          case "Charge":
            // Counted above, like every request that names its caller.
            return yield* succeed(envelope, undefined)
          case "SetRateLimits": {
            const wanted: Record<LimitKind, number> = {
              requests: command.requestsPerMinute ?? options.rateLimits.requestsPerMinute,
              messages: command.messagesPerHour ?? options.rateLimits.messagesPerHour
            }
            // What the session's buckets counted still counts, at the new pace.
            const now = yield* monotonicMillis
            for (const kind of LIMIT_KINDS) {
              RateLimiter.rescale(sessionBuckets[kind], quotaOf(kind, limits[kind]), quotaOf(kind, wanted[kind]), now)
              limits[kind] = wanted[kind]
            }
            return yield* succeed(envelope, undefined)
          }
          case "StopSession":
            yield* stop
            return yield* succeed(envelope, statusView(sessionId, state, yield* monotonicMillis))
          case "UnlinkSession": {
            let outcome: { deviceUnlinked: boolean; detail: string | null } = { deviceUnlinked: false, detail: null }
            const socket = current
            if (socket !== null && state.status === "connected") {
              const out = yield* socket.logout.pipe(Effect.timeout(UNLINK_LOGIN_TIMEOUT), Effect.either)
              outcome = out._tag === "Right"
                ? { deviceUnlinked: true, detail: null }
                : { deviceUnlinked: false, detail: `WhatsApp did not take the logout: ${out.left.message}` }
            }
            yield* stop
            if (!outcome.deviceUnlinked && outcome.detail === null) {
              outcome = state.phoneNumber === null
                ? { deviceUnlinked: false, detail: "the session was not linked (never, or logged out already)" }
                : yield* logoutWithSavedCredentials
            }
            yield* driver.forget(sessionId).pipe(
              Effect.tapError((error) => Effect.logWarning("could not wipe the credentials", error)),
              Effect.ignore
            )
            yield* Effect.logInfo("session unlinked").pipe(Effect.annotateLogs(outcome))
            yield* succeed(envelope, new UnlinkedView({ sessionId, ...outcome }))
            return yield* new Unlinked({ sessionId })
          }
        }
      })

    const mailboxLoop = mailbox.take.pipe(Effect.flatMap(answer), Effect.forever)
    const periodicPersist = persistIfDue.pipe(Effect.delay(options.persistEvery), Effect.forever)

    yield* Effect.annotateLogs(Effect.logDebug("actor started"), "sessionId", sessionId)
    yield* persist
    yield* Effect.all([connectionLoop, mailboxLoop, periodicPersist, outboxLoop], {
      concurrency: "unbounded",
      discard: true
    })
  }).pipe(
    Effect.ensuring(
      // The mailbox closes, and commands still queued are answered "not owner", as are those that come later: the
      // gateway retries them at whichever node runs the session next.
      Effect.sync(() => {
        for (const envelope of mailbox.close()) envelope.reply(Exit.fail(new NotOwner({ shard: fence.shard })))
      })
    ),
    Effect.annotateLogs({ sessionId, shard: fence.shard }),
    Effect.withSpan("SessionActor.run", { attributes: { sessionId } })
  )

  return { handle, run }
})

/**
 * Postgres being away (a restart, a failover) is waited out for a minute without dropping the WhatsApp socket; a
 * stale epoch is not retried (the actor must stop).
 */
const storeRetry = <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.retry(effect, {
    schedule: Schedule.exponential("100 millis").pipe(
      Schedule.union(Schedule.spaced("2 seconds")),
      Schedule.upTo("60 seconds")
    ),
    while: (error) => error._tag === "StoreError"
  })

export const supervisionSchedule = Schedule.exponential("1 second", 2).pipe(
  Schedule.union(Schedule.spaced("30 seconds")),
  Schedule.jittered
)
