/**
 * `pnpm start`: the local cluster launcher. Runs until SIGINT/SIGTERM (runMain interrupts the fiber), then the
 * scope closes: services first, then Postgres and nats-server. Exit codes: 0 after a normal stop, 2 for usage
 * errors, 1 for anything else.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Effect, Exit, Logger, Option } from "effect"
import { PortInUse } from "./FreePort.js"
import * as Launcher from "./Launcher.js"

const program = Effect.gen(function*() {
  const command = yield* Launcher.parseArgs(process.argv.slice(2))
  switch (command._tag) {
    case "Help":
      return yield* Console.log(Launcher.usage)
    case "Run":
      return yield* Effect.scoped(Launcher.serve({
        dataDir: command.dataDir,
        nodes: command.nodes,
        port: command.port,
        simulate: command.simulate,
        natsUrl: process.env.NATS_URL || undefined,
        databaseUrl: process.env.DATABASE_URL || undefined,
        // Test seam: infra's own tests run the launcher against stand-in services.
        gatewayEntry: process.env.WACLUSTER_GATEWAY_ENTRY || undefined,
        nodeEntry: process.env.WACLUSTER_NODE_ENTRY || undefined
      }))
  }
})

const exitCodeOf = (exit: Exit.Exit<unknown, unknown>): number => {
  if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) return 0
  return Option.match(Cause.failureOption(exit.cause), {
    onNone: () => 1,
    onSome: (error) => error instanceof Launcher.UsageError ? 2 : 1
  })
}

/** Our errors carry messages written for people; only defects get a stack trace. */
const report = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.tapErrorCause(effect, (cause) => {
    if (Cause.isInterruptedOnly(cause)) return Effect.void
    return Option.match(Cause.failureOption(cause), {
      onNone: () => Console.error(Cause.pretty(cause)),
      onSome: (error) =>
        Console.error(`\nwacluster: ${error instanceof Error ? error.message : String(error)}${hint(error)}`)
    })
  })

const hint = (error: unknown): string =>
  error instanceof PortInUse && error.wanted === "the gateway"
    ? "\nTo use another gateway port: pnpm start --port <port>"
    : ""

// runMain stops listening after the first SIGINT/SIGTERM. Under tsx (`pnpm start`) a second one (tsx relays the
// terminal's Ctrl-C) would then end this process mid-shutdown and orphan Postgres and nats-server, so we keep a
// listener that only acknowledges. A closed terminal (SIGHUP) shuts down like Ctrl-C.
let stopping = false
const acknowledge = () => {
  if (!stopping) process.stderr.write("\nStopping wacluster (services, then Postgres and nats-server) ...\n")
  stopping = true
}
process.on("SIGINT", acknowledge)
process.on("SIGTERM", acknowledge)
process.once("SIGHUP", () => process.kill(process.pid, "SIGTERM"))

NodeRuntime.runMain(program.pipe(report, Effect.provide(Logger.pretty)), {
  disableErrorReporting: true,
  teardown: (exit, onExit) => onExit(exitCodeOf(exit))
})
