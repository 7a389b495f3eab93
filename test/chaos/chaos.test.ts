/**
 * The short chaos run of CI: 200 linked sessions, seeded faults for about twenty seconds on a single nats-server, then
 * a whole-cluster restart onto a 3-server NATS cluster and another twenty seconds of faults (each phase's last round
 * still finishes). Longer runs: `pnpm chaos`.
 * The seed is fixed so a failure here repeats with `pnpm chaos --seed <seed> --duration 1m`.
 */
import { Duration } from "effect"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { runChaos, summaryLine } from "./Chaos.js"

const seed = Number(process.env.CHAOS_SEED ?? "20261123")

describe("chaos", () => {
  it(
    "keeps every session connected again after each fault, never runs one twice and loses no accepted send",
    async () => {
      const logFile = join(tmpdir(), `wacluster-chaos-ci-${seed}-${process.pid}.log`)
      const summary = await runChaos({
        seed,
        duration: Duration.seconds(20),
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
        expect(phase.rounds).toBeGreaterThan(0)
        expect(phase.overlaps).toBe(0)
        expect(phase.lost).toBe(0)
        expect(phase.accepted).toBeGreaterThan(0)
      }
    },
    12 * 60_000
  )
})
