/**
 * Pre-keys made on worker threads must be what Baileys would have made itself (a public key that belongs to its
 * private key, 32 bytes each, never repeated), and a worker that fails must never fail a link: its requests are
 * served on the main thread instead.
 */
import { describe, expect, it } from "@effect/vitest"
import { Curve } from "@whiskeysockets/baileys"
import { Effect } from "effect"
import { createPrivateKey, createPublicKey } from "node:crypto"
import { readdirSync, readFileSync } from "node:fs"
import * as PreKeyThreads from "../src/internal/PreKeyThreads.js"

const PRIVATE_KEY_DER_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex")
const PUBLIC_KEY_DER_PREFIX = Buffer.from("302a300506032b656e032100", "hex")

const publicKeyOf = (privateKey: Uint8Array) =>
  createPublicKey(
    createPrivateKey({ key: Buffer.concat([PRIVATE_KEY_DER_PREFIX, privateKey]), format: "der", type: "pkcs8" })
  )
    .export({ format: "der", type: "spki" }).subarray(PUBLIC_KEY_DER_PREFIX.length)

const expectValidPairs = (
  pairs: ReadonlyArray<{ readonly public: Uint8Array; readonly private: Uint8Array }>,
  count: number
) => {
  expect(pairs.length).toBe(count)
  const seen = new Set<string>()
  for (const pair of pairs) {
    expect(pair.public.length).toBe(32)
    expect(pair.private.length).toBe(32)
    expect(Buffer.from(pair.public).equals(publicKeyOf(pair.private))).toBe(true)
    seen.add(Buffer.from(pair.private).toString("hex"))
  }
  expect(seen.size).toBe(count)
}

describe("PreKeyThreads", () => {
  it.scoped("makes a link's 812 key pairs on a worker thread, valid and all different", () =>
    Effect.gen(function*() {
      const threads = yield* PreKeyThreads.make({ threads: 2 })
      const counts = [812, 812, 1, 30]
      const batches = yield* Effect.promise(() => Promise.all(counts.map(threads.generate)))
      batches.forEach((pairs, i) => expectValidPairs(pairs, counts[i] ?? -1))
      expect(threads.made()).toEqual({ onWorkers: 1655, onMainThread: 0 })
      // Usable as Signal keys: agreement matches both ways.
      const [alice, bob] = [batches[0]?.[0], batches[1]?.[0]]
      if (alice === undefined || bob === undefined) return expect.fail("no key pairs")
      expect(Buffer.from(Curve.sharedKey(alice.private, bob.public)))
        .toEqual(Buffer.from(Curve.sharedKey(bob.private, alice.public)))
    }))

  it.scoped.skipIf(process.platform !== "linux")(
    "runs its workers below the event loop's priority",
    () =>
      Effect.gen(function*() {
        const niceOf = (task: string) => {
          // Field 19 of /proc/<pid>/task/<tid>/stat, counted after the parenthesised command name.
          const stat = readFileSync(`/proc/self/task/${task}/stat`, "utf8")
          return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16])
        }
        const before = new Set(readdirSync("/proc/self/task"))
        const threads = yield* PreKeyThreads.make({ threads: 1 })
        yield* Effect.promise(() => threads.generate(10))
        const added = readdirSync("/proc/self/task").filter((task) => !before.has(task)).map(niceOf)
        expect(added).toContain(PreKeyThreads.WORKER_NICE)
        expect(niceOf(String(process.pid))).toBe(0)
      })
  )

  it.scoped("serves on the main thread when a worker dies, and keeps serving", () =>
    Effect.gen(function*() {
      const threads = yield* PreKeyThreads.make({ threads: 1, source: "process.exit(3)" })
      const first = yield* Effect.promise(() => threads.generate(100))
      expectValidPairs(first, 100)
      const second = yield* Effect.promise(() => threads.generate(40))
      expectValidPairs(second, 40)
      expect(threads.made()).toEqual({ onWorkers: 0, onMainThread: 140 })
    }))

  it.scoped("serves on the main thread when a worker answers the wrong number of keys", () =>
    Effect.gen(function*() {
      const wrong = `require("node:worker_threads").parentPort.on("message", ({ id }) =>
        require("node:worker_threads").parentPort.postMessage({ id, pairs: new ArrayBuffer(64) }))`
      const threads = yield* PreKeyThreads.make({ threads: 1, source: wrong })
      expectValidPairs(yield* Effect.promise(() => threads.generate(5)), 5)
      expect(threads.made()).toEqual({ onWorkers: 0, onMainThread: 5 })
    }))

  it.scoped("makes them on the main thread with no workers", () =>
    Effect.gen(function*() {
      const threads = yield* PreKeyThreads.make({ threads: 0 })
      expectValidPairs(yield* Effect.promise(() => threads.generate(70)), 70)
      expect(threads.made()).toEqual({ onWorkers: 0, onMainThread: 70 })
    }))

  it.effect("refuses nothing after its scope closed: the main thread takes over", () =>
    Effect.gen(function*() {
      const threads = yield* Effect.scoped(PreKeyThreads.make({ threads: 1 }))
      expectValidPairs(yield* Effect.promise(() => threads.generate(3)), 3)
      expect(threads.made()).toEqual({ onWorkers: 0, onMainThread: 3 })
    }))
})
