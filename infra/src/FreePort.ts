/**
 * Ports on 127.0.0.1. `freePort` picks an unused one below the kernel's ephemeral range (on Linux, read from
 * /proc/sys/net/ipv4/ip_local_port_range): a port from that range can be handed to any outgoing connection (a
 * database client, a test's fetch) while a server we stopped is down, and then its restart on the same port fails.
 * Below the range, only another listener can take it. The small window between closing our probe and the real
 * server binding it is why the process modules retry on "address already in use".
 */
import { Data, Effect } from "effect"
import { readFileSync } from "node:fs"
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

/** The lowest port we pick from: above the registered services that commonly run on a developer's machine. */
const LOWEST = 10_000
/** Fewer candidate ports than this below the ephemeral range, and we let the kernel choose instead. */
const ENOUGH = 2_000

/**
 * The ports below the kernel's ephemeral range we may pick from, as [low, high]; undefined when the range cannot
 * be read or leaves too few below it.
 */
export const pickableRange = (ephemeral: string | undefined): readonly [number, number] | undefined => {
  const match = ephemeral?.trim().match(/^(\d+)\s+(\d+)$/)
  if (match === null || match === undefined) return undefined
  const high = Number(match[1]) - 1
  return high - LOWEST + 1 >= ENOUGH ? [LOWEST, high] : undefined
}

const readEphemeralRange = (): string | undefined => {
  try {
    return readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8")
  } catch {
    return undefined
  }
}

const range = pickableRange(readEphemeralRange())

/** A TCP port on 127.0.0.1 that nobody listens on right now. */
export const freePort: Effect.Effect<number> = (range === undefined
  ? listenOnce(0)
  : Effect.suspend(() => listenOnce(range[0] + Math.floor(Math.random() * (range[1] - range[0] + 1)))).pipe(
    // Taken: another random one (the range holds thousands).
    Effect.retry({ times: 50 }),
    Effect.orElse(() => listenOnce(0))
  )).pipe(Effect.orDie, Effect.withSpan("FreePort.freePort"))

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
