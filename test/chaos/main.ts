/**
 * The chaos run on demand:
 *
 *   pnpm chaos [--seed N (random)] [--duration 10m (per phase)] [--rounds N (most faults per phase)]
 *     [--nats 1|3|both] [--sessions 200] [--logs FILE]
 *
 * Prints every round and ends with one summary line; exits 1 when an invariant broke or the cluster did not
 * recover in time.
 */
import { Duration } from "effect"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { runChaos, summaryLine } from "./Chaos.js"

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    duration: { type: "string", default: "10 minutes" },
    rounds: { type: "string" },
    nats: { type: "string", default: "both" },
    sessions: { type: "string", default: "200" },
    logs: { type: "string" }
  }
})

const duration = Duration.decodeUnknown(
  values.duration.replace(/^(\d+)m$/, "$1 minutes").replace(/^(\d+)s$/, "$1 seconds")
)
if (duration._tag === "None") throw new Error(`--duration: expected e.g. "10m", "90s" or "10 minutes"`)
const rounds = values.rounds === undefined ? undefined : Number(values.rounds)
if (rounds !== undefined && !(Number.isInteger(rounds) && rounds >= 1)) throw new Error("--rounds: a whole number >= 1")
const natsVariants: ReadonlyArray<1 | 3> = values.nats === "both" ? [1, 3] : values.nats === "3" ? [3] : [1]
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed)

const logFile = values.logs ?? join(tmpdir(), `wacluster-chaos-${seed}.log`)
console.log(`chaos: seed ${seed}; service logs in ${logFile}`)
const summary = await runChaos({
  seed,
  logFile,
  duration: duration.value,
  rounds,
  natsVariants,
  sessions: Number(values.sessions)
})
console.log(summaryLine(summary))
process.exit(summary.failure === undefined ? 0 : 1)
