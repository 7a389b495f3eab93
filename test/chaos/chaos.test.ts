/**
 * The short chaos run of CI (within 3 minutes on two cores): 200 linked sessions, one seeded fault on a single
 * nats-server, then a whole-cluster restart onto a 3-server NATS cluster and one more fault. Linking the 200 sessions
 * takes about half of it; a fault costs 10 to 20 s more (it waits for all 200 to be connected again). Every kind of
 * fault in turn, as often as time allows: `pnpm chaos`.
 * The seed is fixed so a failure here repeats with `pnpm chaos --seed <seed> --rounds 1`.
 */
import { Duration } from "effect"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { runChaos, summaryLine } from "./Chaos.js"

// This seed's two faults: a node killed (failover), then one of the three NATS servers restarted.
const seed = Number(process.env.CHAOS_SEED ?? "20261209")

describe("chaos", () => {
  it(
    "keeps every session connected again after each fault, never runs one twice and loses no accepted send",
    async () => {
      const logFile = join(tmpdir(), `wacluster-chaos-ci-${seed}-${process.pid}.log`)
      const summary = await runChaos({
        seed,
        duration: Duration.seconds(20),
        rounds: 1,
        natsVariants: [1, 3],
        sessions: 200,
        logFile,
        log: () => undefined
      })
      // The one line the run ends with, kept in the test's output.
      console.log(summaryLine(summary))
      expect(summary.failure, `${summaryLine(summary)}\nservice logs: ${logFile}`).toBeUndefined()
      expect(summary.phases.map((p) => p.natsServers)).toEqual([1, 3])
      for (const phase of summary.phases) {
        expect(phase.rounds).toBe(1)
        expect(phase.overlaps).toBe(0)
        expect(phase.lost).toBe(0)
        expect(phase.accepted).toBeGreaterThan(0)
      }
    },
    12 * 60_000
  )
})
