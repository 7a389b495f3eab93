import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    // Child processes and native sockets behave better in forked workers than in worker threads.
    pool: "forks",
    // Two files at a time, even on two cores: most of a test's time is spent waiting on child processes, and
    // Vitest's default (cores - 1) would run one file at a time there.
    maxWorkers: 2,
    minWorkers: 1,
    // Logs of passing tests are noise; a failing test still shows everything it printed.
    silent: "passed-only",
    projects: [
      {
        extends: true,
        test: {
          name: "suite",
          include: [
            "packages/*/test/**/*.test.ts",
            "services/*/test/**/*.test.ts",
            "infra/test/**/*.test.ts",
            "test/e2e/**/*.test.ts"
          ],
          // One private Postgres and one nats-server for the whole run (see test/support/globalSetup.ts).
          globalSetup: ["test/support/globalSetup.ts"],
          sequence: { groupOrder: 0 }
        }
      },
      {
        extends: true,
        test: {
          name: "chaos",
          include: ["test/chaos/**/*.test.ts"],
          // After everything else, alone: a whole cluster under faults needs the machine to itself to be judged.
          sequence: { groupOrder: 1 }
        }
      }
    ]
  }
})
