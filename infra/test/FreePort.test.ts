import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { createServer } from "node:net"
import { ensurePortFree, freePort, pickableRange } from "../src/FreePort.js"

describe("FreePort", () => {
  it("picks below the kernel's ephemeral range, where outgoing connections never take a port", () => {
    expect(pickableRange("32768\t60999\n")).toEqual([10_000, 32_767])
    expect(pickableRange("10500 60999")).toBeUndefined()
    expect(pickableRange("garbage")).toBeUndefined()
    expect(pickableRange(undefined)).toBeUndefined()
  })

  it.effect("hands out ports nobody listens on, outside the ephemeral range on Linux", () =>
    Effect.gen(function*() {
      const ports = yield* Effect.all(Array.from({ length: 20 }, () => freePort))
      const range = pickableRange(readEphemeralRange())
      for (const port of ports) {
        yield* ensurePortFree(port, "the test")
        if (range !== undefined) {
          expect(port).toBeGreaterThanOrEqual(range[0])
          expect(port).toBeLessThanOrEqual(range[1])
        }
      }
    }))

  it.effect("says which port is taken and how to find its holder", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const server = createServer()
      yield* Effect.acquireRelease(
        Effect.promise(() => new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve))),
        () => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
      )
      const error = yield* Effect.flip(ensurePortFree(port, "nats-server"))
      expect(error._tag).toBe("PortInUse")
      expect(error.message).toContain(`Port ${port}`)
      expect(error.message).toContain("nats-server")
    }).pipe(Effect.scoped))
})

const readEphemeralRange = () => {
  try {
    return readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8")
  } catch {
    return undefined
  }
}
