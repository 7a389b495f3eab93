import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { chmod, mkdir, symlink, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { findBinary } from "../src/Binaries.js"
import * as NatsServer from "../src/NatsServer.js"
import * as Postgres from "../src/Postgres.js"
import { tempDir } from "./helpers.js"

describe("Binaries", () => {
  it.scopedLive("finds an executable in the given directories and resolves symlinks", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const real = join(dir, "real", "tool")
      yield* Effect.promise(async () => {
        await mkdir(join(dir, "real"))
        await mkdir(join(dir, "linked"))
        await writeFile(real, "#!/bin/sh\n")
        await chmod(real, 0o755)
        await symlink(real, join(dir, "linked", "tool"))
        await writeFile(join(dir, "notexec"), "")
      })
      expect(yield* findBinary({ name: "tool", debianPackage: "x", dirs: [join(dir, "linked")] })).toBe(real)
      const missing = yield* findBinary({ name: "notexec", debianPackage: "x", dirs: [dir] }).pipe(Effect.flip)
      expect(missing._tag).toBe("BinaryNotFound")
    }))

  it.scopedLive("a missing nats-server names the Debian package and the setup script", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const error = yield* NatsServer.start({ dataDir: join(dir, "nats"), binDirs: [dir] }).pipe(Effect.flip)
      expect(error._tag).toBe("BinaryNotFound")
      expect(error.message).toContain("\"nats-server\"")
      expect(error.message).toContain("infra/setup.sh")
    }))

  it.scopedLive("a missing initdb names the postgresql package and the setup script", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const error = yield* Postgres.start({ dataDir: join(dir, "pg"), binDirs: [] }).pipe(Effect.flip)
      expect(error._tag).toBe("BinaryNotFound")
      expect(error.message).toContain("\"postgresql\"")
      expect(error.message).toContain("infra/setup.sh")
    }))
})
