import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Logger, LogLevel, Schedule, Scope } from "effect"
import { freePort } from "../src/FreePort.js"
import * as Service from "../src/Service.js"
import { childScope, isAlive } from "./helpers.js"

const FAKE = "infra/test/fixtures/fakeService.ts"

const startFake = (mode: string, options: Partial<Service.ServiceOptions> = {}) =>
  Effect.gen(function*() {
    const port = yield* freePort
    return yield* Service.start({
      name: `fake-${mode}`,
      entry: FAKE,
      env: { PORT: String(port), FAKE_MODE: mode },
      healthUrl: `http://127.0.0.1:${port}/healthz`,
      ...options
    })
  })

const waitFor = (condition: () => boolean) =>
  Effect.sync(condition).pipe(
    Effect.repeat({ until: (done) => done, schedule: Schedule.spaced("50 millis") }),
    Effect.timeout("5 seconds")
  )

describe("Service", () => {
  it.scopedLive("runs a TypeScript entry, waits for health, hands log lines to the sink, and stops it", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const scope = yield* childScope
      const service = yield* startFake("ok", { output: (line) => lines.push(line) }).pipe(Scope.extend(scope))
      expect(isAlive(service.pid)).toBe(true)
      expect(lines).toContain("a line on stderr")
      expect(lines.some((line) => line.startsWith("listening on"))).toBe(true)

      yield* Scope.close(scope, Exit.void)
      expect(isAlive(service.pid)).toBe(false)
      expect(yield* service.exited).toBe(0)
      expect(lines).toContain("SIGTERM: shutting down")
    }))

  it.scopedLive("fails early when the process exits, with its last log lines in the error", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const error = yield* startFake("exit", { output: "quiet" }).pipe(Effect.flip)
      expect(Date.now() - started).toBeLessThan(10_000)
      expect(error._tag).toBe("ServiceStartError")
      expect(error.message).toContain("exited with code 3")
      expect(error.message).toContain("fatal: cannot reach the database")
    }))

  it.scopedLive("gives up when health never answers 200, and leaves no process behind", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const error = yield* startFake("unhealthy", { output: (line) => lines.push(line), startTimeout: "1500 millis" })
        .pipe(Effect.flip)
      expect(error.message).toContain("did not answer 200")
      // The half-started service was stopped right away, not at the end of the test's scope.
      expect(lines).toContain("SIGTERM: shutting down")
    }))

  it.scopedLive("kills the whole process group, grandchildren included", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const scope = yield* childScope
      const service = yield* startFake("grandchild", { output: (line) => lines.push(line) }).pipe(Scope.extend(scope))
      const grandchild = Number(/^grandchild (\d+)$/.exec(lines.find((l) => l.startsWith("grandchild")) ?? "")?.[1])
      expect(isAlive(grandchild)).toBe(true)
      yield* Scope.close(scope, Exit.void)
      expect(isAlive(service.pid)).toBe(false)
      yield* waitFor(() => !isAlive(grandchild))
    }))

  it.scopedLive("SIGKILLs a service that ignores SIGTERM once the grace period is over", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const service = yield* startFake("ignore-sigterm", { output: (line) => lines.push(line), stopGrace: "1 second" })
      const started = Date.now()
      const code = yield* service.stop()
      expect(Date.now() - started).toBeGreaterThanOrEqual(900)
      expect(code).toBe(128 + 9)
      expect(lines).toContain("ignoring SIGTERM")
      expect(isAlive(service.pid)).toBe(false)
    }).pipe(Logger.withMinimumLogLevel(LogLevel.Error)))

  it.scopedLive("reports a missing entry file plainly", () =>
    Effect.gen(function*() {
      const error = yield* Service.start({
        name: "ghost",
        entry: "services/ghost/src/main.ts",
        healthUrl: "http://127.0.0.1:1/healthz"
      }).pipe(Effect.flip)
      expect(error.message).toContain("does not exist")
    }))

  it("pads and colors the prefix", () => {
    expect(Service.linePrefix("node-1", 7, false)).toBe("node-1  |")
    const colored = Service.linePrefix("gateway", 7, true)
    expect(colored.startsWith("\u001b[")).toBe(true)
    expect(colored.endsWith("mgateway |\u001b[0m")).toBe(true)
  })
})
