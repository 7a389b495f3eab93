/**
 * Vitest global setup: ONE private Postgres (fsync off) and ONE nats-server with JetStream for the whole run, on
 * free ports in a temporary directory, never the machine's own servers. Test files reach them with
 * `inject("databaseAdminUrl")` / `inject("natsUrl")`; TestDatabase gives each test its own database.
 */
import * as NatsServer from "@wacluster/infra/NatsServer"
import * as Postgres from "@wacluster/infra/Postgres"
import { Effect, Exit, Scope } from "effect"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { TestProject } from "vitest/node"
import "./ProvidedContext.js"

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), "wacluster-test-"))
  // mkdtemp makes 0700 directories; when we run as root, Postgres runs as `postgres` and must traverse it.
  await chmod(dir, 0o755)
  const scope = Effect.runSync(Scope.make())
  const teardown = async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await rm(dir, { recursive: true, force: true })
  }
  try {
    const [postgres, nats] = await Effect.runPromise(
      Effect.all([
        Postgres.start({ dataDir: join(dir, "pg"), fsync: false }),
        NatsServer.start({ dataDir: join(dir, "nats") })
      ], { concurrency: "unbounded" }).pipe(Scope.extend(scope))
    )
    project.provide("databaseAdminUrl", postgres.url)
    project.provide("natsUrl", nats.url)
  } catch (error) {
    await teardown()
    throw error
  }
  return teardown
}
