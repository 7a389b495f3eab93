import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { stat } from "node:fs/promises"
import { findBinary, postgresClientDirs } from "../src/Binaries.js"
import * as ClusterSecrets from "../src/ClusterSecrets.js"
import { runSql } from "../src/internal/Psql.js"
import * as LocalCluster from "../src/LocalCluster.js"
import { childScope, isAlive, tempDir } from "./helpers.js"

const FAKE = "infra/test/fixtures/fakeService.ts"

const envOf = (url: string) =>
  Effect.promise(() => fetch(`${url}/env`).then((r) => r.json() as Promise<Record<string, string | null>>))

const startFakeCluster = (dataDir: string, options: Partial<LocalCluster.LocalClusterOptions> = {}) =>
  LocalCluster.start({
    dataDir,
    nodes: 2,
    fsync: false,
    logs: "quiet",
    gatewayEntry: FAKE,
    nodeEntry: FAKE,
    ...options
  })

describe("LocalCluster", () => {
  it.scopedLive("starts nats, postgres, a gateway and nodes wired to the service contract, then stops all", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const scope = yield* childScope
      const cluster = yield* startFakeCluster(dataDir, { env: { LEASE_TTL: "2000", PORT: "1" } }).pipe(
        Scope.extend(scope)
      )
      expect(cluster.nodes.map((node) => node.nodeId)).toEqual(["node-1", "node-2"])

      const gatewayEnv = yield* envOf(cluster.gatewayUrl)
      expect(gatewayEnv).toMatchObject({
        PORT: new URL(cluster.gatewayUrl).port,
        HOST: "127.0.0.1",
        DATABASE_URL: cluster.databaseUrl,
        NATS_URL: cluster.natsUrl,
        ADMIN_TOKEN: cluster.adminToken,
        SHARDS: "256",
        LEASE_TTL: "2000"
      })
      expect(cluster.databaseUrl).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/wacluster$/)
      const psql = yield* Effect.flatMap(
        postgresClientDirs,
        (dirs) => findBinary({ name: "psql", debianPackage: "postgresql", dirs })
      )
      expect(yield* runSql(psql, cluster.databaseUrl, "SELECT current_database()")).toBe("wacluster")

      for (const node of cluster.nodes) {
        const env = yield* envOf(node.httpUrl)
        expect(env).toMatchObject({
          NODE_ID: node.nodeId,
          HTTP_PORT: new URL(node.httpUrl).port,
          HOST: "127.0.0.1",
          DATABASE_URL: cluster.databaseUrl,
          NATS_URL: cluster.natsUrl,
          AUTH_STATE_KEY: cluster.authStateKey,
          LEASE_TTL: "2000"
        })
      }
      expect(cluster.authStateKey).toMatch(/^[0-9a-f]{64}$/)
      const secretsMode = (yield* Effect.promise(() => stat(ClusterSecrets.secretsPath(dataDir)))).mode & 0o777
      expect(secretsMode).toBe(0o600)

      const pids = [
        cluster.gateway.pid,
        ...cluster.nodes.map((node) => node.pid),
        cluster.natsServer?.pid ?? 0,
        cluster.postgres?.pid ?? 0
      ]
      expect(pids.every(isAlive)).toBe(true)
      yield* Scope.close(scope, Exit.void)
      expect(pids.filter(isAlive)).toEqual([])
    }))

  it.scopedLive("adds and stops nodes while running", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const cluster = yield* startFakeCluster(dataDir, { nodes: 1 })
      const added = yield* cluster.addNode()
      expect(added.nodeId).toBe("node-2")
      expect((yield* envOf(added.httpUrl)).NODE_ID).toBe("node-2")
      expect(cluster.nodes.map((node) => node.nodeId)).toEqual(["node-1", "node-2"])

      expect(yield* cluster.stopNode("node-1")).toBe(0)
      expect(isAlive(added.pid)).toBe(true)
      expect(yield* cluster.stopNode("node-2", "SIGKILL")).toBe(137)
      expect(isAlive(added.pid)).toBe(false)
      expect(cluster.nodes).toEqual([])
      const unknown = yield* cluster.stopNode("node-1").pipe(Effect.flip)
      expect(unknown._tag).toBe("UnknownNode")
      expect((yield* cluster.addNode()).nodeId).toBe("node-3")
      const restarted = yield* cluster.addNode("node-1")
      expect((yield* envOf(restarted.httpUrl)).NODE_ID).toBe("node-1")
      expect((yield* cluster.addNode("node-1").pipe(Effect.flip))._tag).toBe("NodeAlreadyRunning")
      expect(cluster.nodes.map((node) => node.nodeId)).toEqual(["node-1", "node-3"])
    }))

  it.scopedLive("reuses the secrets and data of a previous run in the same data directory", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const first = yield* childScope
      const before = yield* startFakeCluster(dataDir, { nodes: 1 }).pipe(Scope.extend(first))
      yield* Scope.close(first, Exit.void)

      const after = yield* startFakeCluster(dataDir, { nodes: 1, env: { SHARDS: "64" } })
      expect(after.adminToken).toBe(before.adminToken)
      expect(after.authStateKey).toBe(before.authStateKey)
      const [node] = after.nodes
      expect(node === undefined ? undefined : (yield* envOf(node.httpUrl)).SHARDS).toBe("64")
    }))

  it.scopedLive("uses given NATS and database URLs instead of starting its own", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const cluster = yield* startFakeCluster(dataDir, {
        nodes: 1,
        natsUrl: "nats://127.0.0.1:1",
        databaseUrl: "postgres://elsewhere/db",
        adminToken: "admin-from-options"
      })
      expect(cluster.natsServer).toBeUndefined()
      expect(cluster.postgres).toBeUndefined()
      expect(yield* envOf(cluster.gatewayUrl)).toMatchObject({
        NATS_URL: "nats://127.0.0.1:1",
        DATABASE_URL: "postgres://elsewhere/db",
        ADMIN_TOKEN: "admin-from-options"
      })
    }))
})
