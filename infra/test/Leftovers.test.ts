import { describe, expect, it } from "@effect/vitest"
import { Effect, Logger, LogLevel, Option, Schedule } from "effect"
import { join } from "node:path"
import { spawnOwned } from "../src/internal/ChildProcess.js"
import * as NatsServer from "../src/NatsServer.js"
import * as Postgres from "../src/Postgres.js"
import { repoRoot } from "../src/Service.js"
import { childrenOf, isAlive, tempDir } from "./helpers.js"

/** Another process that owns servers on `dataDir`, as a running launcher would. */
const holdServers = (dataDir: string) =>
  Effect.gen(function*() {
    const holder = yield* spawnOwned({
      label: "holder",
      command: process.execPath,
      args: ["--import", "tsx", "infra/test/fixtures/holdServers.ts", dataDir],
      cwd: repoRoot,
      stop: { signal: "SIGTERM", target: "process", grace: "10 seconds" }
    })
    const ready = yield* holder.recentLines.pipe(
      Effect.flatMap((lines) => Option.fromNullable(lines.find((line) => line.startsWith("ready ")))),
      Effect.retry(Schedule.spaced("100 millis")),
      Effect.timeout("60 seconds")
    )
    const [natsPid, pgPid] = ready.split(" ").slice(1).map(Number)
    return { holder, natsPid: natsPid ?? 0, pgPid: pgPid ?? 0 }
  })

describe("a process that dies without closing its scopes", () => {
  it.scopedLive("has its servers stopped by the watchdog", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const { holder, natsPid, pgPid } = yield* holdServers(dataDir)
      yield* holder.signal("SIGKILL", "process")
      yield* holder.exited
      yield* Effect.sync(() => isAlive(natsPid) || isAlive(pgPid)).pipe(
        Effect.repeat({ until: (alive) => !alive, schedule: Schedule.spaced("100 millis") }),
        Effect.timeout("10 seconds")
      )
    }))
})

describe("servers left on a data directory", () => {
  it.scopedLive("are refused while their launcher lives, and replaced once it died without cleaning up", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const { holder, natsPid, pgPid } = yield* holdServers(dataDir)

      const pgBusy = yield* Postgres.start({ dataDir: join(dataDir, "pg"), fsync: false }).pipe(Effect.flip)
      expect(pgBusy._tag).toBe("AlreadyRunning")
      expect(pgBusy.message).toContain(`pid ${holder.pid}`)
      const natsBusy = yield* NatsServer.start({ dataDir: join(dataDir, "nats") }).pipe(Effect.flip)
      expect(natsBusy._tag).toBe("AlreadyRunning")

      // A launcher and its watchdog killed outright (say, by the OOM killer): the servers live on, orphaned.
      for (const pid of yield* childrenOf(holder.pid)) {
        if (pid !== natsPid && pid !== pgPid) process.kill(pid, "SIGKILL")
      }
      yield* holder.signal("SIGKILL", "process")
      yield* holder.exited
      expect(isAlive(natsPid) && isAlive(pgPid)).toBe(true)

      const pg = yield* Postgres.start({ dataDir: join(dataDir, "pg"), fsync: false })
      const nats = yield* NatsServer.start({ dataDir: join(dataDir, "nats") })
      expect(isAlive(pgPid) || isAlive(natsPid)).toBe(false)
      expect(isAlive(pg.pid) && isAlive(nats.pid)).toBe(true)
    }).pipe(Logger.withMinimumLogLevel(LogLevel.Error)))
})
