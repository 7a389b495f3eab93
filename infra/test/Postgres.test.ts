import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { findBinary, postgresClientDirs } from "../src/Binaries.js"
import { runSql } from "../src/internal/Psql.js"
import * as Postgres from "../src/Postgres.js"
import { childScope, isAlive, pidsMentioning, tempDir } from "./helpers.js"

const psql = Effect.flatMap(
  postgresClientDirs,
  (dirs) => findBinary({ name: "psql", debianPackage: "postgresql", dirs })
)

const uidOf = (pid: number) =>
  Effect.promise(async () => {
    const status = await readFile(`/proc/${pid}/status`, "utf8")
    return Number(/^Uid:\s+(\d+)/m.exec(status)?.[1])
  })

describe("Postgres", () => {
  it.scopedLive("initialises, serves SQL, creates and drops databases, and stops without leftovers", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataDir = join(dir, "pg")
      const client = yield* psql
      const scope = yield* childScope
      const pg = yield* Postgres.start({ dataDir, fsync: false }).pipe(Scope.extend(scope))
      expect(pg.url).toBe(`postgres://postgres@127.0.0.1:${pg.port}/postgres`)
      expect(yield* runSql(client, pg.url, "SELECT current_user")).toBe("postgres")
      expect(yield* runSql(client, pg.url, "SHOW fsync")).toBe("off")

      const appUrl = yield* pg.createDatabase("app_db")
      expect(appUrl).toBe(`postgres://postgres@127.0.0.1:${pg.port}/app_db`)
      yield* runSql(client, appUrl, "CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
      expect(yield* runSql(client, appUrl, "SELECT x FROM t")).toBe("42")
      expect(yield* pg.ensureDatabase("app_db")).toBe(appUrl)
      const duplicate = yield* pg.createDatabase("app_db").pipe(Effect.flip)
      expect(duplicate.message).toContain("already exists")
      const badName = yield* pg.createDatabase("x\"; DROP DATABASE postgres; --").pipe(Effect.flip)
      expect(badName.message).toContain("invalid database name")

      yield* pg.dropDatabase("app_db")
      expect(yield* runSql(client, pg.url, "SELECT count(*) FROM pg_database WHERE datname = 'app_db'")).toBe("0")

      yield* Scope.close(scope, Exit.void)
      expect(isAlive(pg.pid)).toBe(false)
      // The postmaster's children (checkpointer, walwriter, ...) went with it.
      expect(yield* pidsMentioning(dataDir)).toEqual([])
      expect(yield* pidsMentioning("postgres: ").pipe(Effect.map((pids) => pids.filter(isAlive)))).not.toContain(
        pg.pid
      )
    }))

  it.scopedLive("runs as the postgres user when we are root, and keeps data across restarts", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataDir = join(dir, "pg")
      const client = yield* psql
      const first = yield* childScope
      const pg = yield* Postgres.start({ dataDir, fsync: false }).pipe(Scope.extend(first))
      if (process.getuid?.() === 0) expect(yield* uidOf(pg.pid)).not.toBe(0)
      yield* runSql(client, pg.url, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
      yield* Scope.close(first, Exit.void)

      const again = yield* Postgres.start({ dataDir, fsync: false })
      expect(again.pid).not.toBe(pg.pid)
      expect(yield* runSql(client, again.url, "SELECT x FROM kept")).toBe("7")
    }))

  it.scopedLive("refuses a port that is already taken", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const first = yield* Postgres.start({ dataDir: join(dir, "a"), fsync: false })
      const error = yield* Postgres.start({ dataDir: join(dir, "b"), port: first.port, fsync: false }).pipe(
        Effect.flip
      )
      expect(error._tag).toBe("PortInUse")
    }))

  it.scopedLive("createDatabase and dropDatabase work against any server URL", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const pg = yield* Postgres.start({ dataDir: join(dir, "pg"), fsync: false })
      const url = yield* Postgres.createDatabase(pg.url, "standalone")
      expect(url).toBe(Postgres.databaseUrl(pg.url, "standalone"))
      yield* Postgres.dropDatabase(pg.url, "standalone")
      yield* Postgres.dropDatabase(pg.url, "standalone")
    }))
})
