import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { randomUUID } from "node:crypto"
import { mkdir, readFile, rm, writeFile } from "node:fs/promises"
import { dirname, join } from "node:path"
import { promisify } from "node:util"
import { bundle } from "../src/Bundle.js"
import { repoRoot } from "../src/Service.js"

/**
 * An entry written for the test inside the node service's package (so it resolves our packages as the node's own
 * entry does), removed afterwards.
 */
const withEntry = (source: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const entry = join("services", "node", "node_modules", ".cache", "wacluster-test-entries", `${randomUUID()}.ts`)
      await mkdir(dirname(join(repoRoot, entry)), { recursive: true })
      await writeFile(join(repoRoot, entry), source)
      return entry
    }),
    (entry) => Effect.promise(() => rm(join(repoRoot, entry), { force: true }))
  )

/** Runs a bundle as Service.start does; fails with what the process printed when it exits non-zero. */
const run = (file: string) =>
  Effect.tryPromise({
    try: () => promisify(execFile)(process.execPath, ["--enable-source-maps", file], { cwd: repoRoot }),
    catch: (error) => error as { stderr: string }
  })

describe("Bundle", () => {
  it.scopedLive("holds our own packages and imports installed ones from where they are; it runs", () =>
    Effect.gen(function*() {
      const entry = yield* withEntry(`
import { shardOf } from "@wacluster/domain/Shard"
import { Effect } from "effect"
const shard: number = shardOf("sess_bundled", 256)
console.log(Effect.runSync(Effect.succeed(\`shard \${shard}\`)))
`)
      const main = yield* bundle(repoRoot, entry)
      const code = yield* Effect.promise(() => readFile(main, "utf8"))
      // Our domain code is inside; effect is imported from node_modules by absolute path.
      expect(code).toContain("sess_")
      expect(code).toMatch(/from "\/[^"]*node_modules\/[^"]*effect\/dist\/esm\/index\.js"/)
      expect(code).not.toMatch(/from "@wacluster\//)
      // The lease keeper's worker thread is bundled beside it (LeaseKeeper looks for it there).
      yield* Effect.promise(() => readFile(join(dirname(main), "leaseKeeperWorker.mjs")))
      const { stdout } = yield* run(main)
      expect(stdout.trim()).toMatch(/^shard \d+$/)
    }))

  it.scopedLive("builds once per process: the same entry answers the same file", () =>
    Effect.gen(function*() {
      const entry = yield* withEntry(`console.log("once")\n`)
      const first = yield* bundle(repoRoot, entry)
      const second = yield* bundle(repoRoot, entry)
      expect(second).toBe(first)
    }))

  it.scopedLive("reports a source that does not compile, naming the entry, and keeps stack traces on the source", () =>
    Effect.gen(function*() {
      const broken = yield* withEntry(`const x: number = (\n`)
      const error = yield* Effect.flip(bundle(repoRoot, broken))
      expect(error.name).toBe("BundleError")
      expect(error.message).toContain(broken)

      const throwing = yield* withEntry(`\n\nthrow new Error("from the source")\n`)
      const main = yield* bundle(repoRoot, throwing)
      const failed = yield* Effect.flip(run(main))
      expect(failed.stderr).toContain(`${throwing.split("/").pop()}:3`)
    }))
})
