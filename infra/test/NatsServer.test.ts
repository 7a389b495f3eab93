import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { createConnection } from "node:net"
import { join } from "node:path"
import * as NatsServer from "../src/NatsServer.js"
import { childScope, isAlive, tempDir } from "./helpers.js"

/** Speaks just enough of the NATS text protocol: read INFO, publish to ourselves, see the message come back. */
const roundTrip = (port: number) =>
  Effect.async<{ readonly info: { readonly jetstream?: boolean }; readonly message: string }, Error>((resume) => {
    const socket = createConnection({ host: "127.0.0.1", port })
    let buffer = ""
    let info: { jetstream?: boolean } | undefined
    socket.setEncoding("utf8")
    socket.on("error", (error) => resume(Effect.fail(error)))
    socket.on("data", (chunk: string) => {
      buffer += chunk
      if (info === undefined && buffer.includes("\r\n")) {
        const line = buffer.slice(0, buffer.indexOf("\r\n"))
        info = JSON.parse(line.replace(/^INFO /, "")) as { jetstream?: boolean }
        socket.write("CONNECT {\"verbose\":false}\r\nSUB greet 1\r\nPUB greet 5\r\nhello\r\n")
      }
      const match = /MSG greet 1 5\r\n(\w+)\r\n/.exec(buffer)
      if (info !== undefined && match) {
        socket.end()
        resume(Effect.succeed({ info, message: match[1] ?? "" }))
      }
    })
    return Effect.sync(() => socket.destroy())
  })

describe("NatsServer", () => {
  it.scopedLive("starts with JetStream on a free port, serves clients, and is gone after the scope closes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const scope = yield* childScope
      const nats = yield* NatsServer.start({ dataDir: join(dir, "nats") }).pipe(Scope.extend(scope))
      expect(nats.url).toBe(`nats://127.0.0.1:${nats.port}`)
      const { info, message } = yield* roundTrip(nats.port)
      expect(info.jetstream).toBe(true)
      expect(message).toBe("hello")
      expect(isAlive(nats.pid)).toBe(true)

      yield* Scope.close(scope, Exit.void)
      expect(isAlive(nats.pid)).toBe(false)
      const refused = yield* roundTrip(nats.port).pipe(Effect.flip)
      expect(refused.message).toContain("ECONNREFUSED")
    }))

  it.scopedLive("refuses a port that is already taken, naming it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const first = yield* NatsServer.start({ dataDir: join(dir, "a") })
      const error = yield* NatsServer.start({ dataDir: join(dir, "b"), port: first.port }).pipe(Effect.flip)
      expect(error._tag).toBe("PortInUse")
      expect(error.message).toContain(String(first.port))
    }))
})
