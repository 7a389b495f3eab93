import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Exit, Fiber, Schedule, Scope } from "effect"
import { access, readFile } from "node:fs/promises"
import { createServer } from "node:net"
import { join } from "node:path"
import * as ClusterSecrets from "../src/ClusterSecrets.js"
import { freePort } from "../src/FreePort.js"
import { spawnOwned } from "../src/internal/ChildProcess.js"
import * as Launcher from "../src/Launcher.js"
import { repoRoot } from "../src/Service.js"
import { childScope, isAlive, pidsMentioning, tempDir } from "./helpers.js"

const FAKE = "infra/test/fixtures/fakeService.ts"

const exists = (file: string) => Effect.promise(() => access(file).then(() => true, () => false))

const readInfo = (dataDir: string) =>
  Effect.promise(() => readFile(Launcher.clusterInfoPath(dataDir), "utf8")).pipe(
    Effect.map((text) => JSON.parse(text) as Launcher.ClusterInfo)
  )

const runFake = (dataDir: string, output: Array<string>, options: Partial<Launcher.RunOptions> = {}) =>
  Effect.flatMap(freePort, (port) =>
    Launcher.run({
      dataDir,
      nodes: 1,
      port,
      logs: "quiet",
      gatewayEntry: FAKE,
      nodeEntry: FAKE,
      announce: (text) => Effect.sync(() => output.push(text)),
      ...options
    })).pipe(Effect.map(({ info }) => info))

/** Occupies a port on 127.0.0.1 for the life of the scope. */
const holdPort = Effect.acquireRelease(
  Effect.async<{ readonly port: number; readonly close: () => void }>((resume) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      resume(Effect.succeed({
        port: typeof address === "object" && address !== null ? address.port : 0,
        close: () => server.close()
      }))
    })
  }),
  (held) => Effect.sync(held.close)
)

/** `node --import tsx infra/src/main.ts ...` as `pnpm start` runs it. */
const launch = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  spawnOwned({
    label: "launcher",
    command: process.execPath,
    args: ["--import", "tsx", "infra/src/main.ts", ...args],
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stop: { signal: "SIGINT", target: "process", grace: "15 seconds" }
  })

describe("Launcher.parseArgs", () => {
  it("defaults to two nodes on port 8080 in .data/", () => {
    expect(Launcher.parseArgs([])).toEqual(
      Either.right({ _tag: "Run", nodes: 2, port: 8080, dataDir: join(repoRoot, ".data"), simulate: false })
    )
    expect(Launcher.parseArgs(["--nodes", "3", "--port", "9000", "--data-dir", "/tmp/x"])).toEqual(
      Either.right({ _tag: "Run", nodes: 3, port: 9000, dataDir: "/tmp/x", simulate: false })
    )
  })

  it("recognises --help and --simulate, and rejects nonsense", () => {
    expect(Launcher.parseArgs(["--help"])).toEqual(Either.right({ _tag: "Help" }))
    expect(Launcher.parseArgs(["--simulate", "--nodes", "3"])).toEqual(
      Either.right({ _tag: "Run", nodes: 3, port: 8080, dataDir: join(repoRoot, ".data"), simulate: true })
    )
    for (const bad of [["--nodes", "0"], ["--nodes", "two"], ["--port", "70000"], ["--bogus"], ["extra"]]) {
      const parsed = Launcher.parseArgs(bad)
      expect(Either.isLeft(parsed) && parsed.left._tag === "UsageError").toBe(true)
    }
  })
})

describe("Launcher.run", () => {
  it.scopedLive("creates the default tenant once, publishes cluster.json while running, and explains the API", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const output: Array<string> = []
      const first = yield* childScope
      const info = yield* runFake(dataDir, output).pipe(Scope.extend(first))
      expect(info.tenantToken).toMatch(/^tenant-/)
      expect(yield* readInfo(dataDir)).toEqual(info)
      expect(info.nodes.map((node) => node.nodeId)).toEqual(["node-1"])
      const howTo = output.join("\n")
      expect(howTo).toContain(`curl ${info.gatewayUrl}/cities`)
      expect(howTo).toContain(info.tenantToken)
      expect(howTo).toContain("{\"name\":\"Support-Jakarta-Prod\",\"city\":\"jakarta\"}")
      expect(howTo).toContain("x-api-key")
      yield* Scope.close(first, Exit.void)
      expect(yield* exists(Launcher.clusterInfoPath(dataDir))).toBe(false)

      const again = yield* runFake(dataDir, [])
      expect(again.tenantToken).toBe(info.tenantToken)
      expect(again.adminToken).toBe(info.adminToken)
    }))

  it.scopedLive("replaces a tenant token the gateway no longer accepts or that belongs to another database", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      yield* ClusterSecrets.loadOrCreate(dataDir)
      yield* ClusterSecrets.update(
        dataDir,
        (s) => new ClusterSecrets.ClusterSecrets({ ...s, tenantToken: "revoked", tenantDatabase: "local" })
      )
      const first = yield* childScope
      const info = yield* runFake(dataDir, []).pipe(Scope.extend(first))
      expect(info.tenantToken).toMatch(/^tenant-/)
      yield* Scope.close(first, Exit.void)

      const external = yield* runFake(dataDir, [], { databaseUrl: "postgres://elsewhere/db" })
      expect(external.tenantToken).not.toBe(info.tenantToken)
      expect((yield* ClusterSecrets.loadOrCreate(dataDir)).tenantDatabase).toBe("postgres://elsewhere/db")
    }))

  it.scopedLive("--simulate runs wa-sim, publishes its URLs in cluster.json and explains how to play the phone", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const output: Array<string> = []
      const info = yield* runFake(dataDir, output, { simulate: true })
      expect(info.waSimUrl).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/ws\/chat$/)
      expect(info.waSimControlUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      expect(yield* readInfo(dataDir)).toEqual(info)
      const stats = yield* Effect.promise(() => fetch(`${info.waSimControlUrl}/stats`).then((r) => r.json()))
      expect(stats).toEqual({ devices: 0, liveSockets: 0, overlaps: 0 })
      expect(output.join("\n")).toContain(`${info.waSimControlUrl}/scan`)
      // The simulator keeps its devices and root key in the data directory, so a restart keeps links.
      expect(yield* exists(join(dataDir, "wa-sim.json"))).toBe(true)
    }))

  it.scopedLive("says which port is taken before starting anything", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const held = yield* holdPort
      const error = yield* runFake(dataDir, [], { port: held.port }).pipe(Effect.flip)
      expect(error._tag).toBe("PortInUse")
      expect(error.message).toContain(`Port ${held.port}`)
      expect(yield* exists(join(dataDir, "pg"))).toBe(false)
    }))
})

describe("Launcher.serve", () => {
  it.scopedLive("stops the cluster and fails when a service exits on its own", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const port = yield* freePort
      const serving = yield* Launcher.serve({
        dataDir,
        nodes: 2,
        port,
        logs: "quiet",
        gatewayEntry: FAKE,
        nodeEntry: FAKE,
        announce: () => Effect.void
      }).pipe(Effect.scoped, Effect.fork)
      yield* exists(Launcher.clusterInfoPath(dataDir)).pipe(
        Effect.repeat({ until: (found) => found, schedule: Schedule.spaced("100 millis") }),
        Effect.timeout("60 seconds")
      )
      const info = yield* readInfo(dataDir)
      const [crashing, surviving] = info.nodes
      yield* Effect.sync(() => process.kill(crashing?.pid ?? 0, "SIGKILL"))
      const exit = yield* Fiber.await(serving)
      expect(exit).toEqual(Exit.fail(new Launcher.ServiceDied({ service: crashing?.nodeId ?? "", exitCode: 137 })))
      expect(isAlive(surviving?.pid ?? 0)).toBe(false)
      expect(yield* exists(Launcher.clusterInfoPath(dataDir))).toBe(false)
    }))
})

describe("pnpm start (infra/src/main.ts)", () => {
  it.scopedLive("--help exits 0 and explains --simulate", () =>
    Effect.gen(function*() {
      const help = yield* launch(["--help"])
      expect(yield* help.exited).toBe(0)
      const text = (yield* help.recentLines).join("\n")
      expect(text).toContain("--nodes N")
      expect(text).toContain("--simulate")
    }))

  it.scopedLive("a taken gateway port is reported clearly with exit code 1", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const held = yield* holdPort
      const launcher = yield* launch(["--port", String(held.port), "--data-dir", dataDir])
      expect(yield* launcher.exited).toBe(1)
      const output = (yield* launcher.recentLines).join("\n")
      expect(output).toContain(`Port ${held.port} on 127.0.0.1 is already in use`)
      expect(output).toContain("pnpm start --port")
    }))

  it.scopedLive("runs until SIGINT, then stops every process it started and exits 0", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const port = yield* freePort
      const launcher = yield* launch(["--nodes", "2", "--port", String(port), "--data-dir", dataDir], {
        WACLUSTER_GATEWAY_ENTRY: FAKE,
        WACLUSTER_NODE_ENTRY: FAKE,
        NATS_URL: "",
        DATABASE_URL: ""
      })
      yield* exists(Launcher.clusterInfoPath(dataDir)).pipe(
        Effect.repeat({ until: (found) => found, schedule: Schedule.spaced("200 millis") }),
        Effect.timeout("60 seconds")
      )
      const info = yield* readInfo(dataDir)
      expect(info.gatewayUrl).toBe(`http://127.0.0.1:${port}`)
      const started = yield* pidsMentioning(dataDir)
      expect(started.length).toBeGreaterThan(2)

      yield* launcher.signal("SIGINT", "process")
      expect(yield* launcher.exited).toBe(0)
      expect(info.nodes.map((node) => node.pid).filter(isAlive)).toEqual([])
      expect(started.filter(isAlive)).toEqual([])
      expect(yield* exists(Launcher.clusterInfoPath(dataDir))).toBe(false)
    }))
})
