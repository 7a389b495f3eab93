import { assert, describe, it } from "@effect/vitest"
import { makeEventId } from "@wacluster/domain/Ids"
import { ShardNumber } from "@wacluster/domain/Shard"
import { Effect, Exit } from "effect"
import { Events, type NewEvent } from "../src/Events.js"
import { ShardFences } from "../src/ShardFences.js"
import { seedSession, storeLayer } from "./support.js"

const fence = (shard: number, epoch: number) => ({ shard: ShardNumber.make(shard), epoch })

describe("Events", () => {
  it.layer(storeLayer("events"))((it) => {
    it.effect("appends events fenced, hands out those of the given shards oldest first, forgets published ones", () =>
      Effect.gen(function*() {
        const events = yield* Events
        const fences = yield* ShardFences
        const a = yield* seedSession({ shard: 3 })
        const b = yield* seedSession({ shard: 4 })
        yield* fences.advance(3, 2)
        yield* fences.advance(4, 1)
        const event = (session: typeof a, status: string) =>
          Effect.map(makeEventId, (id): NewEvent => ({
            id,
            tenantId: session.tenantId,
            type: "session.status",
            data: { sessionId: session.id, status }
          }))
        const first = yield* event(a, "connecting")
        const second = yield* event(b, "connecting")
        const third = yield* event(a, "connected")
        yield* events.append(fence(3, 2), [first])
        yield* events.append(fence(4, 1), [second])
        yield* events.append(fence(3, 2), [third])

        const mine = yield* events.pending([3], 10)
        assert.deepStrictEqual(mine.map((e) => e.id), [first.id, third.id])
        assert.deepStrictEqual(mine[1]?.data, { sessionId: a.id, status: "connected" })
        assert.strictEqual(mine[0]?.tenantId, a.tenantId)
        const all = yield* events.pending([3, 4], 10)
        assert.deepStrictEqual(all.map((e) => e.id), [first.id, second.id, third.id])

        // A writer whose epoch is behind the shard's fence writes nothing.
        const stale = yield* Effect.exit(events.append(fence(3, 1), [yield* event(a, "stale")]))
        assert.isTrue(Exit.isFailure(stale) && String(stale.cause).includes("StaleEpoch"))
        assert.strictEqual((yield* events.pending([3], 10)).length, 2)

        yield* events.published(mine.map((e) => e.seq))
        assert.deepStrictEqual((yield* events.pending([3, 4], 10)).map((e) => e.id), [second.id])
        yield* events.published([])
      }))
  })
})
