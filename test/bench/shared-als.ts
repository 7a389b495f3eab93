/**
 * What-if for the density benchmark (`--shared-als`), never for production: preloaded into a service, it makes every
 * `new AsyncLocalStorage()` a thin view onto ONE real AsyncLocalStorage. On Node 20 each enabled AsyncLocalStorage
 * stays in a process-wide list for good and every new promise, timer or other async resource is touched once per
 * instance in that list; Baileys 7.0.0-rc14 creates one per socket (lib/Socket/socket.js:270 →
 * addTransactionCapability, lib/Utils/auth-utils.js:85), so the cost of every async operation in the node grows with
 * the number of sockets it has ever opened. With one real instance that cost is constant. Each view still sees only
 * its own innermost `run`, nested or not (a chain of frames), so the semantics stay those of separate instances.
 */
import asyncHooks from "node:async_hooks"
import { syncBuiltinESMExports } from "node:module"

interface Frame {
  readonly owner: object
  readonly store: unknown
  readonly masked: boolean
  readonly parent: Frame | undefined
}

const Real = asyncHooks.AsyncLocalStorage
const shared = new Real<Frame>()

class SharedView<T> {
  static bind = Real.bind
  static snapshot = Real.snapshot

  getStore(): T | undefined {
    for (let frame = shared.getStore(); frame !== undefined; frame = frame.parent) {
      // Only `run`/`enterWith` of this view put its frames there, with stores of type T.
      if (frame.owner === this) return frame.masked ? undefined : frame.store as T
    }
    return undefined
  }

  run<R, A extends Array<unknown>>(store: T, callback: (...args: A) => R, ...args: A): R {
    return shared.run({ owner: this, store, masked: false, parent: shared.getStore() }, callback, ...args)
  }

  exit<R, A extends Array<unknown>>(callback: (...args: A) => R, ...args: A): R {
    return shared.run({ owner: this, store: undefined, masked: true, parent: shared.getStore() }, callback, ...args)
  }

  enterWith(store: T): void {
    shared.enterWith({ owner: this, store, masked: false, parent: shared.getStore() })
  }

  disable(): void {}
}

Object.defineProperty(asyncHooks, "AsyncLocalStorage", { value: SharedView, writable: true, configurable: true })
syncBuiltinESMExports()
process.stderr.write(`shared-als: every AsyncLocalStorage in pid ${process.pid} shares one (density what-if)\n`)
