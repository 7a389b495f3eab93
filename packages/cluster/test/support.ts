import * as NatsServer from "@wacluster/infra/NatsServer"
import { Duration, Effect } from "effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"

/** A private nats-server with JetStream for one test, stopped and wiped with the scope. */
export const privateNats = (port?: number, dataDir?: string) =>
  Effect.gen(function*() {
    const dir = dataDir ?? (yield* Effect.acquireRelease(
      Effect.promise(() => mkdtemp(join(tmpdir(), "wacluster-nats-"))),
      (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
    ))
    const server = yield* NatsServer.start({ dataDir: dir, port })
    return { ...server, dataDir: dir }
  })

/** Polls `check` until it returns true or the time is up. */
export const eventually = (
  check: () => boolean,
  within: Duration.DurationInput,
  what: string,
  state: () => unknown = () => ""
) =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(within)
    while (!check()) {
      if (Date.now() > deadline) {
        return yield* Effect.dieMessage(`timed out waiting for: ${what} ${JSON.stringify(state())}`)
      }
      yield* Effect.sleep("25 millis")
    }
  })
