/**
 * Ports on 127.0.0.1. `freePort` asks the kernel for an unused one; the small window between closing our probe
 * and the real server binding it is why the process modules retry on "address already in use".
 */
import { Data, Effect } from "effect"
import { createServer } from "node:net"

export class PortInUse extends Data.TaggedError("PortInUse")<{
  readonly port: number
  readonly wanted: string
}> {
  override get message() {
    return `Port ${this.port} on 127.0.0.1 is already in use, so ${this.wanted} cannot listen on it. ` +
      `Stop whatever holds it (ss -ltnp 'sport = :${this.port}') or choose another port.`
  }
}

const listenOnce = (port: number) =>
  Effect.async<number, NodeJS.ErrnoException>((resume) => {
    const server = createServer()
    server.unref()
    server.once("error", (error: NodeJS.ErrnoException) => resume(Effect.fail(error)))
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => {
      const address = server.address()
      const bound = typeof address === "object" && address !== null ? address.port : port
      server.close(() => resume(Effect.succeed(bound)))
    })
  })

/** A TCP port on 127.0.0.1 that nobody listens on right now. */
export const freePort: Effect.Effect<number> = listenOnce(0).pipe(Effect.orDie, Effect.withSpan("FreePort.freePort"))

/** Fails with `PortInUse` when something already listens on 127.0.0.1:`port`. */
export const ensurePortFree = Effect.fn("FreePort.ensurePortFree")(function*(port: number, wanted: string) {
  yield* listenOnce(port).pipe(
    Effect.catchAll((error) =>
      error.code === "EADDRINUSE"
        ? new PortInUse({ port, wanted })
        : Effect.die(error)
    )
  )
})
