import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Schema, Scope } from "effect"
import { readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { runCommand } from "../src/internal/ChildProcess.js"
import * as NatsCluster from "../src/NatsCluster.js"
import { findNatsServer } from "../src/NatsServer.js"
import { childScope, isAlive, tempDir } from "./helpers.js"

const EXAMPLES = fileURLToPath(new URL("../nats/", import.meta.url))

const Varz = Schema.Struct({ server_name: Schema.String, cluster: Schema.Struct({ name: Schema.String }) })
const Routez = Schema.Struct({ num_routes: Schema.Number })

const monitor = <A, I>(server: NatsCluster.ClusterServer, path: string, schema: Schema.Schema<A, I>) =>
  Effect.promise(() => fetch(`${server.monitorUrl}${path}`).then((response) => response.json())).pipe(
    Effect.flatMap(Schema.decodeUnknown(schema)),
    Effect.orDie
  )

/** Polls `effect` until its value satisfies `done`, dying with the last value when the time is up. */
const eventually = <A>(effect: Effect.Effect<A>, done: (a: A) => boolean, within: Duration.DurationInput) =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(within)
    for (;;) {
      const value = yield* effect
      if (done(value)) return value
      if (Date.now() > deadline) return yield* Effect.dieMessage(`still ${JSON.stringify(value)}`)
      yield* Effect.sleep("100 millis")
    }
  })

const checkConfig = (binary: string, file: string) => runCommand({ command: binary, args: ["-t", "-c", file] })

describe("NatsCluster", () => {
  it.scopedLive("the committed examples in infra/nats/ are what renderConfig writes, and nats-server accepts them", () =>
    Effect.gen(function*() {
      const binary = yield* findNatsServer()
      expect(NatsCluster.exampleConfigs.map((config) => config.serverName)).toEqual(["nats-1", "nats-2", "nats-3"])
      for (const config of NatsCluster.exampleConfigs) {
        const file = join(EXAMPLES, `${config.serverName}.conf`)
        const committed = yield* Effect.promise(() => readFile(file, "utf8"))
        expect(committed, `${file} is out of date; renderConfig writes:\n${NatsCluster.renderConfig(config)}`)
          .toBe(NatsCluster.renderConfig(config))
        const checked = yield* checkConfig(binary, file)
        expect(checked.exitCode, checked.stderr + checked.stdout).toBe(0)
      }
      // `-t` does parse: a config cut short is refused.
      const dir = yield* tempDir
      const broken = join(dir, "broken.conf")
      const [first] = NatsCluster.exampleConfigs
      const text = first === undefined ? "" : NatsCluster.renderConfig(first)
      yield* Effect.promise(() => writeFile(broken, text.slice(0, text.lastIndexOf("}"))))
      expect((yield* checkConfig(binary, broken)).exitCode).not.toBe(0)
    }))

  it.scopedLive(
    "starts 3 routed JetStream servers; a killed one restarts on its ports and rejoins",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const scope = yield* childScope
        const cluster = yield* NatsCluster.start({ dataDir: join(dir, "nats"), size: 3, startTimeout: "40 seconds" })
          .pipe(Scope.extend(scope))
        expect(cluster.servers.map((server) => server.name)).toEqual(["nats-1", "nats-2", "nats-3"])
        expect(cluster.url).toBe(cluster.servers.map((server) => `nats://127.0.0.1:${server.port}`).join(","))
        const ports = cluster.servers.flatMap((server) => [server.port, server.clusterPort, server.monitorPort])
        expect(new Set(ports).size).toBe(9)

        for (const server of cluster.servers) {
          expect(yield* monitor(server, "/varz", Varz)).toMatchObject({
            server_name: server.name,
            cluster: { name: "wacluster" }
          })
          const config = yield* Effect.promise(() => readFile(server.configFile, "utf8"))
          expect(config).toContain(`store_dir: ${JSON.stringify(server.storeDir)}`)
          // Routes are solicited by both sides at once; wait until the duplicates are gone.
          yield* eventually(monitor(server, "/routez", Routez), (routez) => routez.num_routes === 2, "10 seconds")
        }
        const leaders = yield* Effect.forEach(cluster.servers, (server) => NatsCluster.metaLeader(server.monitorUrl))
        expect(new Set(leaders).size).toBe(1)
        const leader = cluster.servers.find((server) => server.name === leaders[0])
        if (leader === undefined) return yield* Effect.dieMessage(`no server named ${leaders[0]}`)
        const others = cluster.servers.filter((server) => server !== leader)

        // Kill the meta leader: the other two elect a new one among themselves.
        const oldPid = leader.pid
        expect(yield* leader.kill()).toBe(137)
        expect(isAlive(oldPid)).toBe(false)
        expect(yield* leader.isRunning).toBe(false)
        for (const server of others) {
          yield* eventually(
            NatsCluster.metaLeader(server.monitorUrl),
            (name) => name !== "" && name !== leader.name,
            "20 seconds"
          )
        }

        yield* leader.restart
        expect(yield* leader.isRunning).toBe(true)
        expect(leader.pid).not.toBe(oldPid)
        expect(yield* monitor(leader, "/varz", Varz)).toMatchObject({ server_name: leader.name })
        expect(yield* NatsCluster.metaLeader(leader.monitorUrl)).not.toBe("")
        yield* eventually(monitor(leader, "/routez", Routez), (routez) => routez.num_routes === 2, "10 seconds")
        // A second restart of a running server changes nothing.
        const pid = leader.pid
        yield* leader.restart
        expect(leader.pid).toBe(pid)

        const pids = cluster.servers.map((server) => server.pid)
        expect(pids.every(isAlive)).toBe(true)
        yield* Scope.close(scope, Exit.void)
        expect(pids.filter(isAlive)).toEqual([])
      }),
    60_000
  )
})
