/**
 * wa-sim as its own process:
 *   pnpm --filter @wacluster/wa-sim start -- [--port N] [--control-port M] [--state-file path] [--liveness-probe-ms T]
 * (or WA_SIM_PORT, WA_SIM_CONTROL_PORT, WA_SIM_STATE_FILE, WA_SIM_LIVENESS_PROBE_MS). When ready it prints exactly
 * one JSON line to stdout, `{"waSimUrl","waSimControlUrl","rootPublicKey"}`, and it stops cleanly on SIGINT/SIGTERM.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Config, ConfigProvider, Effect, Option } from "effect"
import * as WaSim from "./WaSim.js"

const flags: Record<string, string> = {
  "--port": "WA_SIM_PORT",
  "--control-port": "WA_SIM_CONTROL_PORT",
  "--state-file": "WA_SIM_STATE_FILE",
  "--liveness-probe-ms": "WA_SIM_LIVENESS_PROBE_MS"
}

const parseArgs = (args: ReadonlyArray<string>): Map<string, string> => {
  const values = new Map<string, string>()
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? ""
    if (arg === "--") continue
    const [flag = "", inline] = arg.split("=", 2)
    const key = flags[flag]
    const value = inline ?? args[++i]
    if (!key || value === undefined) {
      process.stderr.write(
        `usage: wa-sim [--port N] [--control-port M] [--state-file path] [--liveness-probe-ms T] (bad argument: ${arg})\n`
      )
      process.exit(2)
    }
    values.set(key, value)
  }
  return values
}

/** A TCP port, where 0 (unlike `Config.port`) means "any free port". */
const port = (name: string) =>
  Config.integer(name).pipe(
    Config.validate({ message: "Expected a port from 0 to 65535", validation: (n) => n >= 0 && n <= 65_535 })
  )

const options = Config.all({
  port: port("WA_SIM_PORT").pipe(
    Config.withDefault(0),
    Config.withDescription("Port of the WhatsApp WebSocket endpoint (0: a free port)")
  ),
  controlPort: port("WA_SIM_CONTROL_PORT").pipe(
    Config.withDefault(0),
    Config.withDescription("Port of the control API (0: a free port)")
  ),
  stateFile: Config.option(Config.string("WA_SIM_STATE_FILE")).pipe(
    Config.withDescription("JSON file keeping linked devices and the root key across restarts")
  ),
  livenessProbeMs: Config.integer("WA_SIM_LIVENESS_PROBE_MS").pipe(
    Config.validate({ message: "Expected a positive number of milliseconds", validation: (n) => n > 0 }),
    Config.withDefault(1_500),
    Config.withDescription(
      "How long a replaced socket has to answer a ping for the login that replaced it to count as an overlap"
    )
  )
})

const program = Effect.gen(function*() {
  const { controlPort, livenessProbeMs, port, stateFile } = yield* options
  const sim = yield* WaSim.make({
    port,
    controlPort,
    livenessProbeMs,
    ...Option.match(stateFile, { onNone: () => ({}), onSome: (path) => ({ stateFile: path }) }),
    onError: (error) => Effect.runFork(Effect.logWarning("wa-sim: protocol error", error))
  })
  const ready = { waSimUrl: sim.url, waSimControlUrl: sim.controlUrl, rootPublicKey: sim.rootPublicKey }
  yield* Effect.sync(() => process.stdout.write(`${JSON.stringify(ready)}\n`))
  return yield* Effect.never
}).pipe(
  Effect.scoped,
  Effect.withConfigProvider(
    ConfigProvider.fromMap(parseArgs(process.argv.slice(2))).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))
  )
)

// stdout carries the one ready line that launchers parse; libsignal (inside Baileys) prints session notices with
// console.info/log, and Effect logs through console.log, so those go to stderr.
console.log = console.error
console.info = console.error

NodeRuntime.runMain(program)
