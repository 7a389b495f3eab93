import { describe, expect, it } from "@effect/vitest"
import * as NatsCluster from "@wacluster/infra/NatsCluster"
import { Context, Duration, Effect, Layer, Option, Redacted, Schedule, Schema, Stream } from "effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type Bucket, Nats } from "../src/Nats.js"

const encode = (text: string) => new TextEncoder().encode(text)
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

/** Three nats-servers routed into one JetStream cluster, stopped and wiped with the scope. */
const privateCluster = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), "wacluster-nats-cluster-"))),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )
  return yield* NatsCluster.start({ dataDir: dir, size: 3, startTimeout: "40 seconds" })
})

/** A client through the project's Nats layer, given every server of the cluster. */
const connect = (cluster: NatsCluster.NatsCluster) =>
  Effect.map(
    Layer.build(Nats.layer({ url: Redacted.make(cluster.url), name: "nats-cluster-test" })),
    Context.get(Nats)
  )

const StreamDetail = Schema.Struct({
  name: Schema.String,
  cluster: Schema.optional(Schema.Struct({ leader: Schema.optional(Schema.String) })),
  state: Schema.Struct({ last_seq: Schema.Number }),
  config: Schema.optional(Schema.Struct({ num_replicas: Schema.Number }))
})
const Jsz = Schema.Struct({
  account_details: Schema.optionalWith(
    Schema.Array(
      Schema.Struct({ stream_detail: Schema.optionalWith(Schema.Array(StreamDetail), { default: () => [] }) })
    ),
    { default: () => [] }
  )
})

/** What one server's monitoring endpoint says about a KV bucket's stream, if the server holds a replica. */
const streamOn = (server: NatsCluster.ClusterServer, bucket: string) =>
  Effect.promise(() =>
    fetch(`${server.monitorUrl}/jsz?accounts=true&streams=true&config=true`).then((response) => response.json())
  ).pipe(
    Effect.flatMap(Schema.decodeUnknown(Jsz)),
    Effect.orDie,
    Effect.map((jsz) =>
      Option.fromNullable(
        jsz.account_details.flatMap((account) => account.stream_detail).find((stream) => stream.name === `KV_${bucket}`)
      )
    )
  )

/** A compare-and-set write of `value` over whatever `key` holds now; returns the new revision. */
const casWrite = (bucket: Bucket, key: string, value: string) =>
  Effect.flatMap(
    bucket.get(key),
    Option.match({
      onNone: () => bucket.create(key, encode(value)),
      onSome: (record) => bucket.update(key, encode(value), record.revision)
    })
  )

/**
 * Retries `casWrite` (a lost CAS included: a timed-out write may have landed) until it succeeds or time is up.
 * Each attempt gets 1 s, as a lease renewal would: a write sent to a dead stream leader is never answered, and the
 * client's own JetStream timeout (5 s) would otherwise hide for seconds that a new leader already took over.
 */
const writeWithin = (bucket: Bucket, key: string, value: string, within: Duration.DurationInput) =>
  casWrite(bucket, key, value).pipe(
    Effect.timeoutFail({ duration: "1 second", onTimeout: () => "attempt timed out" }),
    Effect.retry(Schedule.spaced("100 millis")),
    Effect.timeoutFail({ duration: within, onTimeout: () => `no successful write of ${key} within ${within}` }),
    Effect.timed
  )

const readValue = (bucket: Bucket, key: string) =>
  Effect.map(bucket.get(key), Option.map((record) => decode(record.value)))

describe("Nats on a 3-server JetStream cluster", () => {
  it.scopedLive(
    "a 3-replica bucket keeps taking CAS writes while its leader is killed; the server rejoins",
    () =>
      Effect.gen(function*() {
        const cluster = yield* privateCluster
        const nats = yield* connect(cluster)
        const bucket = yield* nats.bucket("failover", { replicas: 3 })
        const first = yield* bucket.create("lease", encode("a-1"))
        const second = yield* bucket.update("lease", encode("a-2"), first)
        expect(second).toBeGreaterThan(first)

        const streams = yield* Effect.forEach(cluster.servers, (server) => streamOn(server, "failover"))
        const details = streams.flatMap(Option.toArray)
        expect(details).toHaveLength(3)
        expect(details.map((stream) => stream.config?.num_replicas)).toEqual([3, 3, 3])
        const leaderName = details[0]?.cluster?.leader
        const leader = cluster.servers.find((server) => server.name === leaderName)
        if (leader === undefined) return yield* Effect.dieMessage(`the stream has no leader (${leaderName})`)

        // The stream's leader is the worst server to lose: a new one must be elected before any write lands.
        expect(yield* leader.kill()).toBe(137)
        const [took, third] = yield* writeWithin(bucket, "lease", "a-3", "15 seconds")
        expect(Duration.toMillis(took)).toBeLessThan(15_000)
        expect(third).toBeGreaterThan(second)
        expect(yield* readValue(bucket, "lease")).toEqual(Option.some("a-3"))
        expect((yield* bucket.create("lease", encode("intruder")).pipe(Effect.flip))._tag).toBe("RevisionMismatch")
        const created = yield* bucket.create("written-while-down", encode("x"))
        expect(yield* readValue(bucket, "written-while-down")).toEqual(Option.some("x"))

        // Back on its old ports and storage, it catches up on what it missed.
        yield* leader.restart
        yield* streamOn(leader, "failover").pipe(
          Effect.repeat({
            schedule: Schedule.spaced("200 millis"),
            until: (stream) => Option.exists(stream, (s) => s.state.last_seq >= created)
          }),
          Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => `${leader.name} did not catch up` })
        )
        yield* bucket.update("lease", encode("a-4"), third)
        expect(yield* readValue(bucket, "lease")).toEqual(Option.some("a-4"))
      }),
    60_000
  )

  it.scopedLive(
    "with every server down writes fail promptly; the same client recovers once they are back",
    () =>
      Effect.gen(function*() {
        const cluster = yield* privateCluster
        const nats = yield* connect(cluster)
        const events: Array<string> = []
        yield* Stream.fromAsyncIterable(nats.connection.status(), (cause) => cause).pipe(
          Stream.runForEach((status) => Effect.sync(() => events.push(status.type))),
          Effect.ignore,
          Effect.forkScoped
        )
        const bucket = yield* nats.bucket("outage", { replicas: 3 })
        const before = yield* bucket.create("lease", encode("before"))

        yield* Effect.forEach(cluster.servers, (server) => server.kill(), { concurrency: "unbounded" })
        const [took, [writeFailure, readFailure]] = yield* Effect.all([
          bucket.update("lease", encode("during"), before).pipe(Effect.flip),
          bucket.get("lease").pipe(Effect.flip)
        ], { concurrency: "unbounded" }).pipe(
          Effect.timeoutFail({
            duration: "20 seconds",
            onTimeout: () => "a write or read hung with every server down"
          }),
          Effect.timed
        )
        expect(writeFailure._tag).toBe("NatsError")
        expect(readFailure._tag).toBe("NatsError")
        expect(Duration.toMillis(took)).toBeLessThan(20_000)
        expect(events).toContain("disconnect")

        // Together: none of them is ready before a majority is back.
        yield* Effect.forEach(cluster.servers, (server) => server.restart, { concurrency: "unbounded" })
        const [recovered] = yield* writeWithin(bucket, "lease", "after", "30 seconds")
        expect(Duration.toMillis(recovered)).toBeLessThan(30_000)
        expect(yield* readValue(bucket, "lease")).toEqual(Option.some("after"))
        expect(nats.connection.isClosed()).toBe(false)
        expect(events).toContain("reconnect")
      }),
    60_000
  )
})
