import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Schedule } from "effect"
import { access, rm } from "node:fs/promises"
import { join } from "node:path"
import { runCommand } from "../src/internal/ChildProcess.js"
import { tempDir } from "./helpers.js"

const exists = (path: string) => Effect.promise(() => access(path).then(() => true, () => false))

describe("runCommand", () => {
  it.scopedLive("interrupted, stops the command and what it started before it returns", () =>
    Effect.gen(function*() {
      const dir = join(yield* tempDir, "data")
      // As initdb does with its postgres child: a process of its own keeps writing into a directory (for 30 s at
      // most, should it outlive a failing test).
      const script = `mkdir -p ${dir}; touch ${dir}/ready
        (for i in $(seq 1500); do mkdir -p ${dir}; touch ${dir}/written; sleep 0.02; done) &
        wait`
      const running = yield* Effect.fork(runCommand({ command: "sh", args: ["-c", script] }))
      yield* exists(join(dir, "ready")).pipe(
        Effect.repeat({ until: (ready) => ready, schedule: Schedule.spaced("20 millis") }),
        Effect.timeout("10 seconds")
      )
      yield* Fiber.interrupt(running)
      // Nothing writes there any more: the directory, removed now, stays gone (as a cleanup's `rm -r` expects).
      yield* Effect.promise(() => rm(dir, { recursive: true }))
      yield* Effect.sleep("300 millis")
      expect(yield* exists(dir)).toBe(false)
    }))

  it.effect("answers a command's exit code and output", () =>
    Effect.gen(function*() {
      const result = yield* runCommand({ command: "sh", args: ["-c", "echo out; echo err >&2; exit 3"] })
      expect(result).toEqual({ exitCode: 3, stdout: "out\n", stderr: "err\n" })
    }))
})
