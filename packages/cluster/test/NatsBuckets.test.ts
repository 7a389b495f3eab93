import { describe, expect, it } from "@effect/vitest"
import * as NatsCluster from "@wacluster/infra/NatsCluster"
import { Context, Effect, Layer, Option, Redacted, Schema } from "effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Nats } from "../src/Nats.js"

const encode = (text: string) => new TextEncoder().encode(text)

/** A 3-server JetStream cluster, gone with the scope. */
const privateCluster = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), "wacluster-nats-buckets-"))),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )
  return yield* NatsCluster.start({ dataDir: dir, size: 3, startTimeout: "40 seconds" })
})

const connect = (url: string) =>
  Effect.map(Layer.build(Nats.layer({ url: Redacted.make(url), name: "buckets-test" })), Context.get(Nats))

const StreamInfo = Schema.parseJson(Schema.Struct({
  config: Schema.Struct({ num_replicas: Schema.Number }),
  cluster: Schema.Struct({
    leader: Schema.optional(Schema.String),
    replicas: Schema.optionalWith(Schema.Array(Schema.Unknown), { default: () => [] })
  })
}))

/** Through JetStream's own API: a KV bucket's stream, as configured and as it runs. */
const streamInfo = (nats: Context.Tag.Service<Nats>, bucket: string) =>
  nats.request(`$JS.API.STREAM.INFO.KV_${bucket}`, new Uint8Array(), "5 seconds").pipe(
    Effect.flatMap((reply) => Schema.decodeUnknown(StreamInfo)(new TextDecoder().decode(reply))),
    Effect.orDie
  )

describe("Nats buckets on a 3-server JetStream cluster", () => {
  it.scopedLive(
    "are created with the replicas asked for; an existing bucket is scaled up, never down",
    () =>
      Effect.gen(function*() {
        const cluster = yield* privateCluster
        // Spaces around the commas, as people write lists: every server still counts.
        const nats = yield* connect(` ${cluster.urls.join(" , ")} `)
        // What the stream is configured with, and how many peers it runs on (its leader and the followers).
        const replicas = (bucket: string) =>
          Effect.map(
            streamInfo(nats, bucket),
            (info) => ({ configured: info.config.num_replicas, peers: info.cluster.replicas.length + 1 })
          )

        yield* nats.bucket("three", { replicas: 3 })
        expect(yield* replicas("three")).toEqual({ configured: 3, peers: 3 })

        yield* nats.bucket("grows")
        expect(yield* replicas("grows")).toEqual({ configured: 1, peers: 1 })
        // Opening it asks for 3: it returns once the stream has 3 peers and a leader, so writes land at once.
        const grown = yield* nats.bucket("grows", { replicas: 3 })
        expect(yield* replicas("grows")).toEqual({ configured: 3, peers: 3 })
        yield* grown.put("key", encode("value"))

        yield* nats.bucket("grows", { replicas: 1 })
        expect(yield* replicas("grows")).toEqual({ configured: 3, peers: 3 })
      }),
    60_000
  )

  it.scopedLive(
    "a read right after a write sees that write, even through a server that only follows",
    () =>
      Effect.gen(function*() {
        const cluster = yield* privateCluster
        const setup = yield* connect(cluster.url)
        yield* setup.bucket("reads", { replicas: 3 })
        // Clients of the followers are where stale reads would come from: their own server answers first.
        const { cluster: placement } = yield* streamInfo(setup, "reads")
        const followers = cluster.servers.filter((server) => server.name !== placement.leader)
        expect(followers).toHaveLength(2)
        const readers = yield* Effect.forEach(
          followers,
          (follower) => Effect.flatMap(connect(follower.url), (nats) => nats.bucket("reads", { replicas: 3 }))
        )

        const missed: Array<string> = []
        for (let index = 0; index < 500; index++) {
          const key = `key-${index}`
          const reader = readers[index % readers.length]
          if (reader === undefined) continue
          const revision = yield* reader.create(key, encode(key))
          for (const other of readers) {
            const read = yield* other.get(key)
            if (!Option.exists(read, (record) => record.revision === revision)) missed.push(key)
          }
        }
        expect(missed).toEqual([])
      }),
    60_000
  )
})
