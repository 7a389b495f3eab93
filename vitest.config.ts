import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: [
      "packages/*/test/**/*.test.ts",
      "services/*/test/**/*.test.ts",
      "infra/test/**/*.test.ts",
      "test/e2e/**/*.test.ts"
    ],
    // One private Postgres and one nats-server for the whole run (see test/support/globalSetup.ts).
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    // Child processes and native sockets behave better in forked workers than in worker threads.
    pool: "forks",
    // Logs of passing tests are noise; a failing test still shows everything it printed.
    silent: "passed-only"
  }
})
