/**
 * The density benchmark's baseline, in its own process: N bare Baileys sockets (in-memory auth, the driver's
 * socket options, a silent logger, no Postgres, no actors, no cluster) linked to wa-sim by the same QR → scan
 * flow, then kept connected. Prints progress to stderr and, at the end, one JSON line to stdout with this
 * process's memory before the first socket and after all are connected and settled (as density.ts reads the
 * node's: running, and after forced full collections, hence `--expose-gc`).
 *
 *   node --expose-gc --import tsx test/bench/baileys-baseline.ts --url ws://… --control-url http://… --root-key <hex>
 *     [--sessions 100] [--concurrency 20] [--settle 15] [--phone-prefix 62812]
 */
import { createRequire } from "node:module"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { parseArgs } from "node:util"
// Baileys is a dependency of wa-sim, not of this package: its types are read from there, and so is the module.
import type * as Baileys from "../../packages/wa-sim/node_modules/@whiskeysockets/baileys/lib/index.js"
import type { ILogger } from "../../packages/wa-sim/node_modules/@whiskeysockets/baileys/lib/Utils/logger.js"
import { waSimControl } from "../support/WaSimControl.js"
import { fromProcess, measure, type Measured } from "./memory.js"

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    "control-url": { type: "string" },
    "root-key": { type: "string" },
    sessions: { type: "string", default: "100" },
    concurrency: { type: "string", default: "20" },
    settle: { type: "string", default: "15" },
    "phone-prefix": { type: "string", default: "62812" }
  }
})
const required = (name: string, value: string | undefined) => {
  if (value === undefined) throw new Error(`--${name} is required`)
  return value
}
const url = required("url", values.url)
const sim = waSimControl(required("control-url", values["control-url"]))
const rootKey = required("root-key", values["root-key"])
const sessions = Number(values.sessions)
const concurrency = Number(values.concurrency)
const settleSeconds = Number(values.settle)

const repoRoot = new URL("../../", import.meta.url).pathname
const baileysPath = createRequire(join(repoRoot, "packages/wa-sim/package.json")).resolve("@whiskeysockets/baileys")
const baileys: typeof Baileys = await import(pathToFileURL(baileysPath).href)
const makeWASocket = baileys.default
const { Browsers, DisconnectReason, initAuthCreds, WA_CERT_DETAILS } = baileys

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const log = (line: string) => process.stderr.write(`baseline | ${line}\n`)

const noop = () => undefined
const silentLogger: ILogger = {
  level: "silent",
  child: () => silentLogger,
  trace: noop,
  debug: noop,
  info: noop,
  warn: noop,
  error: noop
}

/** Signal keys in a Map, as simple as an auth state can be (Baileys adds its transaction layer itself). */
const memoryKeys = (): Baileys.SignalKeyStore => {
  const data = new Map<string, Map<string, unknown>>()
  return {
    get: <T extends keyof Baileys.SignalDataTypeMap>(type: T, ids: Array<string>) => {
      const found: { [id: string]: Baileys.SignalDataTypeMap[T] } = {}
      for (const id of ids) {
        const value = data.get(type)?.get(id)
        // Only `set` fills a type's map, with values of that type.
        if (value !== undefined) found[id] = value as Baileys.SignalDataTypeMap[T]
      }
      return found
    },
    set: (set: Baileys.SignalDataSet) => {
      for (const [type, entries] of Object.entries(set)) {
        let bucket = data.get(type)
        if (bucket === undefined) data.set(type, bucket = new Map())
        for (const [id, value] of Object.entries(entries ?? {})) {
          if (value === null || value === undefined) bucket.delete(id)
          else bucket.set(id, value)
        }
      }
    }
  }
}

const statusCodeOf = (error: unknown): number | undefined => {
  if (typeof error !== "object" || error === null || !("output" in error)) return undefined
  const output = error.output
  if (typeof output !== "object" || output === null || !("statusCode" in output)) return undefined
  return typeof output.statusCode === "number" ? output.statusCode : undefined
}

WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(rootKey, "hex")

let connected = 0
let unexpectedCloses = 0
const sockets = new Set<ReturnType<typeof makeWASocket>>()

/**
 * One bare client: shows a QR, which the phone scans; after pairing WhatsApp asks for a restart (515), and the
 * next socket logs in with the new credentials. Resolves once connected; later drops are counted, not healed.
 */
const linkOne = (index: number): Promise<void> =>
  new Promise((resolve, reject) => {
    const auth = { creds: initAuthCreds(), keys: memoryKeys() }
    const phoneNumber = `${values["phone-prefix"]}${String(index).padStart(7, "0")}`
    let scanned = false
    let attempts = 0
    let open = false
    const start = () => {
      attempts++
      const socket = makeWASocket({
        waWebSocketUrl: url,
        auth,
        logger: silentLogger,
        browser: Browsers.ubuntu("Chrome"),
        printQRInTerminal: false,
        markOnlineOnConnect: false,
        syncFullHistory: false,
        shouldSyncHistoryMessage: () => false,
        fireInitQueries: true,
        generateHighQualityLinkPreview: false,
        connectTimeoutMs: 20_000,
        keepAliveIntervalMs: 30_000
      })
      sockets.add(socket)
      socket.ev.on("connection.update", (update) => {
        if (update.qr !== undefined && !scanned) {
          scanned = true
          sim.scan(update.qr, phoneNumber).catch((error: unknown) => {
            scanned = false
            log(`scan ${index} failed: ${String(error)}`)
          })
        }
        if (update.connection === "open") {
          open = true
          connected++
          resolve()
        }
        if (update.connection === "close") {
          sockets.delete(socket)
          const code = statusCodeOf(update.lastDisconnect?.error)
          if (open) {
            unexpectedCloses++
            return
          }
          if (code === DisconnectReason.restartRequired || attempts < 5) {
            start()
            return
          }
          reject(new Error(`socket ${index} closed with ${code}: ${String(update.lastDisconnect?.error)}`))
        }
      })
    }
    start()
  })

const memory = () =>
  measure(async () => fromProcess(process.memoryUsage()), () => {
    if (typeof globalThis.gc !== "function") throw new Error("run with --expose-gc")
    globalThis.gc()
  })

const main = async () => {
  // The idle figure includes Baileys loaded and initialised, as the node's idle figure does.
  const idle = await memory()
  const began = performance.now()
  let next = 0
  let failures = 0
  const progress = setInterval(() => log(`${connected}/${sessions} connected`), 10_000)
  await Promise.all(Array.from({ length: Math.min(concurrency, sessions) }, async () => {
    while (next < sessions) {
      const index = next++
      try {
        await linkOne(index)
      } catch (error) {
        failures++
        log(String(error))
      }
    }
  }))
  clearInterval(progress)
  const linkSeconds = (performance.now() - began) / 1000
  log(`${connected}/${sessions} connected in ${linkSeconds.toFixed(1)} s; settling ${settleSeconds} s`)
  const cpuBefore = process.cpuUsage()
  await sleep(settleSeconds * 1000)
  const cpu = process.cpuUsage(cpuBefore)
  const settleCpuPercent = (cpu.user + cpu.system) / 1e6 / settleSeconds * 100
  const after = await memory()
  const result: {
    idle: Measured
    after: Measured
    connected: number
    failures: number
    unexpectedCloses: number
    linkSeconds: number
    settleCpuPercent: number
  } = { idle, after, connected, failures, unexpectedCloses, linkSeconds, settleCpuPercent }
  process.stdout.write(`${JSON.stringify(result)}\n`)
  for (const socket of sockets) socket.end(undefined)
  await sleep(500)
  process.exit(0)
}

await main()
