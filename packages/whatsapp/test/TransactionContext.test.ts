/**
 * Baileys runs every key-store transaction inside an AsyncLocalStorage context. Our patch (patches/) shares one
 * AsyncLocalStorage between all sockets instead of one each, which on Node 20 made every promise cost as much as
 * the number of open sockets. These tests pin what the patch must keep: a socket sees only its own transaction.
 */
import { describe, expect, it } from "@effect/vitest"
import { addTransactionCapability, type SignalDataSet, type SignalKeyStore } from "@whiskeysockets/baileys"
import type { ILogger } from "@whiskeysockets/baileys/lib/Utils/logger.js"
import { readFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"

const silentLogger: ILogger = {
  level: "silent",
  child: () => silentLogger,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined
}

const memoryStore = (): SignalKeyStore & { readonly data: Map<string, unknown> } => {
  const data = new Map<string, unknown>()
  return {
    data,
    // These tests only write; a store that never has a key to read is enough.
    get: async () => ({}),
    set: async (changes: SignalDataSet) => {
      for (const [type, entries] of Object.entries(changes)) {
        for (const [id, value] of Object.entries(entries ?? {})) {
          if (value === null) data.delete(`${type}/${id}`)
          else data.set(`${type}/${id}`, value)
        }
      }
    }
  }
}

const options = { maxCommitRetries: 1, delayBetweenTriesMs: 1 }

describe("Baileys key-store transactions (patched to one shared AsyncLocalStorage)", () => {
  it("the installed Baileys carries the patch (pnpm applies patches/ on install)", async () => {
    const entry = createRequire(import.meta.url).resolve("@whiskeysockets/baileys")
    const source = await readFile(join(dirname(entry), "Utils", "auth-utils.js"), "utf8")
    expect(source).toContain("wacluster patch")
    expect(source.match(/new AsyncLocalStorage\(\)/g)).toHaveLength(1)
  })

  it("a socket inside another socket's transaction is not in a transaction itself", async () => {
    const a = addTransactionCapability(memoryStore(), silentLogger, options)
    const b = addTransactionCapability(memoryStore(), silentLogger, options)
    expect(a.isInTransaction()).toBe(false)
    await a.transaction(async () => {
      expect(a.isInTransaction()).toBe(true)
      // Code of socket B that happens to run in A's async context (a shared scheduler, say).
      expect(b.isInTransaction()).toBe(false)
      await b.transaction(async () => {
        expect(b.isInTransaction()).toBe(true)
        expect(a.isInTransaction()).toBe(true)
      }, "b")
      expect(b.isInTransaction()).toBe(false)
    }, "a")
    expect(a.isInTransaction()).toBe(false)
  })

  it("commits each socket's writes to its own store only", async () => {
    const storeA = memoryStore()
    const storeB = memoryStore()
    const a = addTransactionCapability(storeA, silentLogger, options)
    const b = addTransactionCapability(storeB, silentLogger, options)
    await a.transaction(async () => {
      await a.set({ session: { "peer.0": Buffer.from("a") } })
      await b.set({ session: { "peer.0": Buffer.from("b") } })
    }, "a")
    expect(storeA.data.get("session/peer.0")).toEqual(Buffer.from("a"))
    expect(storeB.data.get("session/peer.0")).toEqual(Buffer.from("b"))
  })
})
