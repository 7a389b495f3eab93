import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { httpOk } from "../src/internal/Readiness.js"
import * as LocalCluster from "../src/LocalCluster.js"
import { childScope, isAlive, tempDir } from "./helpers.js"

const FAKE = "infra/test/fixtures/fakeService.ts"

const envOf = (url: string) =>
  Effect.promise(() => fetch(`${url}/env`).then((r) => r.json() as Promise<Record<string, string | null>>))

/** Stand-in services and a database URL nobody connects to: only NATS is real here. */
const startFakeCluster = (dataDir: string, options: Partial<LocalCluster.LocalClusterOptions> = {}) =>
  LocalCluster.start({
    dataDir,
    nodes: 1,
    logs: "quiet",
    databaseUrl: "postgres://elsewhere/db",
    gatewayEntry: FAKE,
    nodeEntry: FAKE,
    ...options
  })

const healthy = (monitorPort: number) => httpOk(`http://127.0.0.1:${monitorPort}/healthz`)

describe("LocalCluster NATS", () => {
  it.scopedLive(
    "natsServers: 3 runs a 3-server cluster, wires all of it into the services, and stops it",
    () =>
      Effect.gen(function*() {
        const dataDir = yield* tempDir
        const scope = yield* childScope
        const cluster = yield* startFakeCluster(dataDir, { natsServers: 3 }).pipe(Scope.extend(scope))
        expect(cluster.natsServer).toBeUndefined()
        expect(cluster.natsServers).toHaveLength(3)
        expect(cluster.natsUrl).toBe(cluster.natsServers.map((server) => server.url).join(","))
        const [node] = cluster.nodes
        for (const url of [cluster.gatewayUrl, node?.httpUrl ?? ""]) {
          expect(yield* envOf(url)).toMatchObject({ NATS_URL: cluster.natsUrl, NATS_KV_REPLICAS: "3" })
        }

        const [victim] = cluster.natsServers
        if (victim === undefined) return yield* Effect.dieMessage("no servers")
        const pid = victim.pid
        expect(yield* victim.kill()).toBe(137)
        expect(yield* healthy(victim.monitorPort)).toBe(false)
        yield* victim.restart
        expect(victim.pid).not.toBe(pid)
        expect(yield* healthy(victim.monitorPort)).toBe(true)

        const pids = cluster.natsServers.map((server) => server.pid)
        expect(pids.every(isAlive)).toBe(true)
        yield* Scope.close(scope, Exit.void)
        expect(pids.filter(isAlive)).toEqual([])
      }),
    60_000
  )

  it.scopedLive(
    "by default one nats-server, which can be killed and restarted on its port",
    () =>
      Effect.gen(function*() {
        const dataDir = yield* tempDir
        const cluster = yield* startFakeCluster(dataDir)
        const server = cluster.natsServer
        if (server === undefined) return yield* Effect.dieMessage("no nats-server")
        expect(cluster.natsServers).toEqual([server])
        expect(cluster.natsUrl).toBe(server.url)
        expect((yield* envOf(cluster.gatewayUrl)).NATS_KV_REPLICAS).toBeNull()

        expect(yield* server.kill()).toBe(137)
        expect(yield* server.isRunning).toBe(false)
        expect(yield* healthy(server.monitorPort)).toBe(false)
        yield* server.restart
        expect(yield* server.isRunning).toBe(true)
        expect(yield* healthy(server.monitorPort)).toBe(true)
      }),
    60_000
  )
})
