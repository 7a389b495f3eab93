import { assert, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as ClusterMeta from "../src/ClusterMeta.js"
import { ShardsMismatch } from "../src/Errors.js"
import { storeLayer } from "./support.js"

layer(storeLayer("cluster_meta"), { timeout: 60_000, excludeTestServices: true })("ClusterMeta", (it) => {
  it.effect("the first process records SHARDS; others must agree", () =>
    Effect.gen(function*() {
      const meta = yield* ClusterMeta.ClusterMeta
      // Several processes starting at once with the same value all pass.
      yield* Effect.all(Array.from({ length: 6 }, () => meta.ensureShards(256)), { concurrency: "unbounded" })
      yield* meta.ensureShards(256)

      const error = yield* Effect.flip(meta.ensureShards(128))
      assert.instanceOf(error, ShardsMismatch)
      assert.deepInclude(error, { stored: 256, configured: 128 })
      expect(error.message).toBe(
        "SHARDS is fixed for the life of a cluster: the database says 256, this process was started with 128"
      )
    }))
})
