/**
 * Delivers the webhook queue of the shards this node holds. Each endpoint has one lane: a fiber that posts its
 * pending events one at a time in stream order (so an endpoint gets its session's events in order), retries the
 * one at the head on the configured schedule while the rest wait, and turns the endpoint off — with a
 * `webhook.disabled` event — once the schedule is exhausted. Lanes are independent: a slow or failing endpoint holds
 * only its own lane (and one of WEBHOOK_CONCURRENCY posts in flight).
 *
 * Every outcome is written fenced by the shard epoch. When the shard goes, its lanes are interrupted (an
 * unfinished post is abandoned) and the shard's next owner posts again: at least once, with the same `webhook-id`.
 * A lane goes on to its next item only once the outcome is committed; the outcomes of all lanes are committed
 * together (one transaction for whatever the lanes finished meanwhile), so Postgres is not the limit of how many
 * deliveries a node makes.
 */
import { SqlClient } from "@effect/sql"
import { ShardLeases } from "@wacluster/cluster/ShardLeases"
import * as SlowStops from "@wacluster/cluster/SlowStops"
import { makeDeliveryId, makeEventId, type WebhookId } from "@wacluster/domain/Ids"
import { ShardNumber } from "@wacluster/domain/Shard"
import { AuthCipher } from "@wacluster/store/AuthCipher"
import type { StaleEpoch, StoreError } from "@wacluster/store/Errors"
import { Events } from "@wacluster/store/Events"
import type { Fence } from "@wacluster/store/Fence"
import {
  type AttemptOutcome,
  type EndpointWork,
  type FencedAttempt,
  type QueueItem,
  WebhookQueue
} from "@wacluster/store/WebhookQueue"
import { secretPurpose, type WebhookRecord, Webhooks } from "@wacluster/store/Webhooks"
import {
  Context,
  Deferred,
  Duration,
  Effect,
  ExecutionStrategy,
  Exit,
  Layer,
  Option,
  Queue,
  Schedule,
  Scope,
  Stream,
  SubscriptionRef
} from "effect"
import * as Signature from "./Signature.js"
import { WebhookClient } from "./WebhookClient.js"
import type { WebhookConfig } from "./WebhookConfig.js"
import { WebhookIntake } from "./WebhookIntake.js"

/** How often the held shards are compared with the lanes running. */
const RECONCILE_EVERY = Duration.millis(500)
/** How often every held shard is searched for pending work (re-enabled endpoints, manual redeliveries). */
const RESCAN_EVERY = Duration.seconds(2)
/** A lane with nothing to do for this long stops. */
const LANE_IDLE = Duration.seconds(30)
/** Items a lane reads at a time. */
const LANE_BATCH = 50
/** Outcomes committed in one transaction at most. */
const RECORD_BATCH = 500
const PRUNE_EVERY = Duration.hours(1)

export class WebhookDispatcher extends Context.Tag("@wacluster/webhooks/WebhookDispatcher")<WebhookDispatcher, {
  /** The endpoints with a lane on this node now. */
  readonly lanes: Effect.Effect<number>
}>() {}

interface Recording extends FencedAttempt {
  readonly done: Deferred.Deferred<void, StoreError | StaleEpoch>
}

interface Lane {
  readonly wake: Queue.Queue<void>
}

interface HeldShard {
  readonly fence: Fence
  readonly scope: Scope.CloseableScope
  readonly lanes: Map<WebhookId, Lane>
}

/** A wait of the schedule, spread by ±10% so endpoints failing together are not retried together. */
const jittered = (wait: Duration.Duration) => Duration.toMillis(wait) * (0.9 + Math.random() * 0.2)

export const make = (config: WebhookConfig) =>
  Effect.gen(function*() {
    const leases = yield* ShardLeases
    const { floor } = yield* WebhookIntake
    const queue = yield* WebhookQueue
    const webhooks = yield* Webhooks
    const cipher = yield* AuthCipher
    const client = yield* WebhookClient
    const events = yield* Events
    const sql = yield* SqlClient.SqlClient
    const recordings = yield* Queue.unbounded<Recording>()

    /** Commits the outcomes the lanes have finished, many at a time, and tells each lane how its own went. */
    const recorder = Effect.gen(function*() {
      const batch = Array.from(yield* Queue.takeBetween(recordings, 1, RECORD_BATCH))
      // Whatever happens (a defect too), every lane of the batch hears of it.
      const written = yield* Effect.exit(queue.recordAll(batch))
      for (const [index, recording] of batch.entries()) {
        if (Exit.isFailure(written)) {
          yield* Deferred.done(recording.done, written)
          continue
        }
        const refused = written.value[index] ?? null
        yield* Deferred.done(recording.done, refused === null ? Exit.void : Exit.fail(refused))
      }
    })
    yield* recorder.pipe(Effect.forever, Effect.forkScoped)
    const record = (fence: Fence, attempt: FencedAttempt["attempt"]) =>
      Effect.gen(function*() {
        const done = yield* Deferred.make<void, StoreError | StaleEpoch>()
        yield* Queue.offer(recordings, { fence, attempt, done })
        return yield* Deferred.await(done)
      })
    const permits = yield* Effect.makeSemaphore(config.concurrency)
    const layerScope = yield* Effect.scope
    const held = new Map<number, HeldShard>()

    const secretsOf = (endpoint: WebhookRecord) =>
      Effect.gen(function*() {
        const open = (stored: Uint8Array) =>
          Effect.map(
            cipher.decrypt(endpoint.sessionId, secretPurpose(endpoint.id), stored),
            (bytes) => Buffer.from(bytes).toString("utf8")
          )
        const current = yield* open(endpoint.secret)
        const previous = endpoint.previousSecret !== null && endpoint.previousSecretUntil !== null &&
            endpoint.previousSecretUntil.getTime() > Date.now()
          ? [yield* open(endpoint.previousSecret)]
          : []
        return [current, ...previous]
      })

    const outcomeOf = (succeeded: boolean, item: QueueItem): AttemptOutcome => {
      if (succeeded) return { _tag: "delivered" }
      const wait = config.retrySchedule[item.attempts]
      return wait === undefined ? { _tag: "failed" } : { _tag: "retry", at: new Date(Date.now() + jittered(wait)) }
    }

    /** Turns off an endpoint that exhausted the schedule, and says so with an event, in one transaction. */
    const disable = (shard: HeldShard, endpoint: WebhookRecord, reason: string) =>
      sql.withTransaction(Effect.gen(function*() {
        const disabled = yield* queue.disable(shard.fence, endpoint.id, reason)
        if (Option.isNone(disabled)) return
        yield* events.append(shard.fence, [{
          id: yield* makeEventId,
          tenantId: disabled.value.tenantId,
          type: "webhook.disabled",
          data: { sessionId: disabled.value.sessionId, webhookId: endpoint.id, url: endpoint.url, reason }
        }])
        yield* Effect.logWarning("webhook endpoint turned off: it kept failing").pipe(
          Effect.annotateLogs({ webhookId: endpoint.id, sessionId: endpoint.sessionId, reason })
        )
      }))

    /** One attempt at the item; answers whether the lane may go on to the next. */
    const attempt = (shard: HeldShard, endpoint: WebhookRecord, secrets: ReadonlyArray<string>, item: QueueItem) =>
      Effect.gen(function*() {
        const timestamp = Math.floor(Date.now() / 1000)
        const headers = Signature.headers(secrets, item.eventId, timestamp, item.payload)
        const result = yield* permits.withPermits(1)(client.post(endpoint.url, headers, item.payload))
        const outcome = outcomeOf(result.succeeded, item)
        yield* record(shard.fence, {
          deliveryId: yield* makeDeliveryId,
          item,
          succeeded: result.succeeded,
          statusCode: result.statusCode,
          latencyMs: result.latencyMs,
          error: result.error,
          outcome
        })
        if (outcome._tag === "failed") {
          yield* disable(
            shard,
            endpoint,
            `all ${item.attempts + 1} attempts to deliver ${item.eventId} failed; the last: ${result.error ?? "?"}`
          )
        }
        return result.succeeded
      })

    const runLane = (shard: HeldShard, webhookId: WebhookId, lane: Lane) =>
      Effect.gen(function*() {
        while (true) {
          const items = yield* queue.due(webhookId, yield* SubscriptionRef.get(floor), LANE_BATCH)
          if (items.length === 0) {
            const woken = yield* Queue.take(lane.wake).pipe(Effect.timeout(LANE_IDLE), Effect.option)
            if (Option.isSome(woken)) continue
            // Idle: leave, unless work arrived as the lane was leaving (a wake meant for it would be lost).
            shard.lanes.delete(webhookId)
            const late = yield* queue.due(webhookId, yield* SubscriptionRef.get(floor), 1)
            if (late.length === 0 || shard.lanes.has(webhookId)) return
            shard.lanes.set(webhookId, lane)
            continue
          }
          const endpoint = yield* webhooks.find(webhookId)
          if (Option.isNone(endpoint) || !endpoint.value.enabled) {
            shard.lanes.delete(webhookId)
            return
          }
          const secrets = yield* secretsOf(endpoint.value)
          for (const item of items) {
            const wait = item.nextAttemptAt.getTime() - Date.now()
            if (wait > 0) {
              // The head waits for its next attempt; new work may wake the lane to look again.
              yield* Queue.take(lane.wake).pipe(Effect.timeout(Duration.millis(wait)), Effect.ignore)
              break
            }
            if (!(yield* attempt(shard, endpoint.value, secrets, item))) break
          }
        }
      }).pipe(
        Effect.catchTags({
          StaleEpoch: () => Effect.sync(() => shard.lanes.delete(webhookId)),
          AuthDecryptError: (error) =>
            Effect.zipRight(
              Effect.logError("a webhook secret does not decrypt; its endpoint gets nothing", error),
              Effect.sync(() => shard.lanes.delete(webhookId))
            )
        }),
        Effect.tapError((error) => Effect.logWarning("a webhook lane failed; starting it again", error)),
        Effect.retry(Schedule.spaced("1 second")),
        Effect.annotateLogs({ webhookId, shard: shard.fence.shard })
      )

    const wakeOrStart = (work: EndpointWork) =>
      Effect.gen(function*() {
        const shard = held.get(work.shard)
        if (shard === undefined) return
        const running = shard.lanes.get(work.webhookId)
        if (running !== undefined) return yield* Queue.offer(running.wake, undefined)
        const lane: Lane = { wake: yield* Queue.sliding<void>(1) }
        shard.lanes.set(work.webhookId, lane)
        yield* Effect.forkIn(runLane(shard, work.webhookId, lane), shard.scope)
      })

    const findWork = (shards: ReadonlyArray<number>, after: number) =>
      Effect.gen(function*() {
        const upTo = yield* SubscriptionRef.get(floor)
        if (shards.length === 0 || upTo <= after) return
        const work = yield* queue.withWork(shards, after, upTo)
        yield* Effect.forEach(work, wakeOrStart, { discard: true })
      }).pipe(Effect.catchAll((error) => Effect.logWarning("could not look for webhook work", error)))

    const reconcile = Effect.gen(function*() {
      const now = new Map((yield* leases.held).map((shard) => [shard.shard, shard.epoch]))
      for (const [shard, state] of held) {
        if (now.get(shard) !== state.fence.epoch) {
          held.delete(shard)
          yield* Scope.close(state.scope, Exit.void)
        }
      }
      const added: Array<number> = []
      for (const [shard, epoch] of now) {
        if (held.has(shard)) continue
        held.set(shard, {
          fence: { shard: ShardNumber.make(shard), epoch },
          scope: yield* Scope.fork(layerScope, ExecutionStrategy.sequential),
          lanes: new Map()
        })
        added.push(shard)
      }
      yield* findWork(added, -1)
    })

    yield* reconcile.pipe(Effect.repeat(Schedule.spaced(RECONCILE_EVERY)), Effect.forkScoped)
    yield* Effect.addFinalizer(() =>
      Effect.forEach(held.values(), (state) => Scope.close(state.scope, Exit.void), { discard: true }).pipe(
        SlowStops.track("webhook deliveries")
      )
    )

    // New events queued: wake (or start) the lanes they are for.
    let seen = yield* SubscriptionRef.get(floor)
    yield* floor.changes.pipe(
      Stream.runForEach((upTo) => {
        const after = seen
        seen = upTo
        return findWork(Array.from(held.keys()), after)
      }),
      Effect.forkScoped
    )
    yield* Effect.suspend(() => findWork(Array.from(held.keys()), -1)).pipe(
      Effect.repeat(Schedule.spaced(RESCAN_EVERY)),
      Effect.forkScoped
    )
    yield* Effect.suspend(() =>
      queue.prune(Array.from(held.keys()), new Date(Date.now() - Duration.toMillis(config.logRetention)))
    ).pipe(
      Effect.catchAll((error) => Effect.logWarning("could not prune the webhook log", error)),
      Effect.repeat(Schedule.spaced(PRUNE_EVERY)),
      Effect.forkScoped
    )

    return WebhookDispatcher.of({
      lanes: Effect.sync(() => {
        let count = 0
        for (const state of held.values()) count += state.lanes.size
        return count
      })
    })
  })

export const layer = (config: WebhookConfig) => Layer.scoped(WebhookDispatcher, make(config))
