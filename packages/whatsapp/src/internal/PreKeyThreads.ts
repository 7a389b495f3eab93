/**
 * One-time pre-keys made on worker threads. A device uploads 812 of them when it links, and each X25519 key pair
 * costs ~120 µs of OpenSSL: ~100 ms per link that a node otherwise spends on its main thread, where the event loop
 * also renews the node's leases and serves every other session. A worker makes a whole batch and hands back one
 * buffer (public and private key, 32 bytes each, per pair), the same DER-encoded key generation libsignal uses.
 * Workers run at a lower priority than the event loop (`WORKER_NICE`).
 *
 * Never a reason for a link to fail: if a worker dies, its requests and the next ones are served on the main
 * thread in slices (as Baileys does itself) and a new worker is started on a later request.
 */
import type { KeyPair } from "@whiskeysockets/baileys"
import { Curve } from "@whiskeysockets/baileys"
import { Effect, type Scope } from "effect"
import { Worker } from "node:worker_threads"

/**
 * Niceness of the worker threads (Linux): below the node's event loop, which renews the leases and serves every
 * session. On a busy machine a full-speed worker took the event loop's core and stalled it for seconds while
 * thousands of devices linked; at nice 10 linking slows down instead.
 */
export const WORKER_NICE = 10

/** The worker's code (CommonJS, run with `eval`): `{ id, count }` in, `{ id, pairs }` out. */
export const workerSource = `
const { parentPort } = require("node:worker_threads")
const { generateKeyPairSync } = require("node:crypto")
try {
  // On Linux a thread has its own niceness: /proc/thread-self names this thread's id.
  const tid = Number(require("node:fs").readlinkSync("/proc/thread-self").split("/").pop())
  require("node:os").setPriority(tid, ${WORKER_NICE})
} catch {}
const encoding = { publicKeyEncoding: { format: "der", type: "spki" }, privateKeyEncoding: { format: "der", type: "pkcs8" } }
// The DER prefixes of an X25519 SubjectPublicKeyInfo (12 bytes) and PrivateKeyInfo (16 bytes).
parentPort.on("message", ({ id, count }) => {
  const pairs = new Uint8Array(count * 64)
  for (let i = 0; i < count; i++) {
    const { publicKey, privateKey } = generateKeyPairSync("x25519", encoding)
    pairs.set(publicKey.subarray(12, 44), i * 64)
    pairs.set(privateKey.subarray(16, 48), i * 64 + 32)
  }
  parentPort.postMessage({ id, pairs: pairs.buffer }, [pairs.buffer])
})
`

export interface PreKeyThreads {
  /** `count` fresh key pairs in Baileys' shape (32-byte public and private keys). */
  readonly generate: (count: number) => Promise<Array<KeyPair>>
  /** Key pairs made so far, on workers and on the main thread. */
  readonly made: () => { readonly onWorkers: number; readonly onMainThread: number }
}

interface Request {
  readonly count: number
  readonly resolve: (pairs: Array<KeyPair>) => void
  readonly reject: (error: Error) => void
}

interface Thread {
  readonly worker: Worker
  readonly requests: Map<number, Request>
  /** Key pairs asked of it and not yet answered. */
  load: number
}

/** How long after a worker died the main thread serves on its own before starting another. */
const RESPAWN_AFTER_MS = 5_000

/** Key pairs made here, 32 at a time with a turn of the event loop between. */
export const generateOnMainThread = async (count: number): Promise<Array<KeyPair>> => {
  const pairs: Array<KeyPair> = []
  while (pairs.length < count) {
    const slice = Math.min(32, count - pairs.length)
    for (let i = 0; i < slice; i++) pairs.push(Curve.generateKeyPair())
    if (pairs.length < count) await new Promise((resolve) => setImmediate(resolve))
  }
  return pairs
}

const pairsOf = (buffer: ArrayBuffer, count: number): Array<KeyPair> => {
  const bytes = new Uint8Array(buffer)
  const pairs: Array<KeyPair> = new Array(count)
  for (let i = 0; i < count; i++) {
    pairs[i] = {
      public: Buffer.from(bytes.subarray(i * 64, i * 64 + 32)),
      private: Buffer.from(bytes.subarray(i * 64 + 32, i * 64 + 64))
    }
  }
  return pairs
}

/**
 * Up to `threads` workers (0: everything on the main thread), started on first use, stopped with the scope.
 * `source` is the workers' code; tests give one that fails.
 */
export const make = (options: { readonly threads: number; readonly source?: string }): Effect.Effect<
  PreKeyThreads,
  never,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const source = options.source ?? workerSource
    const threads = new Set<Thread>()
    let nextId = 0
    let closed = false
    let lastDeath = Number.NEGATIVE_INFINITY
    const made = { onWorkers: 0, onMainThread: 0 }
    const onMainThread = (count: number) => {
      made.onMainThread += count
      return generateOnMainThread(count)
    }

    const retire = (thread: Thread, error: Error) => {
      if (!threads.delete(thread)) return
      lastDeath = Date.now()
      for (const request of thread.requests.values()) {
        if (closed) request.reject(error)
        else onMainThread(request.count).then(request.resolve, request.reject)
      }
      thread.requests.clear()
      void thread.worker.terminate()
    }

    const spawn = (): Thread | undefined => {
      try {
        const worker = new Worker(source, { eval: true })
        worker.unref()
        const thread: Thread = { worker, requests: new Map(), load: 0 }
        worker.on("message", (message: { readonly id: number; readonly pairs: ArrayBuffer }) => {
          const request = thread.requests.get(message.id)
          if (request === undefined) return
          thread.requests.delete(message.id)
          thread.load -= request.count
          if (message.pairs.byteLength !== request.count * 64) {
            retire(thread, new Error(`a pre-key worker answered ${message.pairs.byteLength} bytes`))
            onMainThread(request.count).then(request.resolve, request.reject)
            return
          }
          made.onWorkers += request.count
          request.resolve(pairsOf(message.pairs, request.count))
        })
        worker.on("error", (error) => retire(thread, error))
        worker.on("exit", (code) => retire(thread, new Error(`a pre-key worker exited with code ${code}`)))
        threads.add(thread)
        return thread
      } catch {
        lastDeath = Date.now()
        return undefined
      }
    }

    const pick = (): Thread | undefined => {
      let best: Thread | undefined
      for (const thread of threads) if (best === undefined || thread.load < best.load) best = thread
      const mayGrow = threads.size < options.threads && Date.now() - lastDeath >= RESPAWN_AFTER_MS
      if (mayGrow && (best === undefined || best.load > 0)) return spawn() ?? best
      return best
    }

    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        closed = true
        const stopping = [...threads]
        for (const thread of stopping) retire(thread, new Error("pre-key threads stopped"))
        await Promise.all(stopping.map((thread) => thread.worker.terminate()))
      })
    )

    const generate = (count: number): Promise<Array<KeyPair>> => {
      const thread = closed || count <= 0 ? undefined : pick()
      if (thread === undefined) return onMainThread(count)
      return new Promise((resolve, reject) => {
        const id = nextId++
        thread.requests.set(id, { count, resolve, reject })
        thread.load += count
        thread.worker.postMessage({ id, count })
      })
    }
    return { generate, made: () => ({ ...made }) }
  })
