import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { withHotSpan } from "../src/Spans.js"

const currentSpanName = Effect.currentSpan.pipe(Effect.map((span) => span.name), Effect.option)

describe("withHotSpan", () => {
  it.effect("is a span named as asked, with its attributes, while tracing is enabled", () =>
    Effect.gen(function*() {
      const inside = yield* Effect.currentSpan.pipe(withHotSpan("Router.send", { attributes: { shard: 7 } }))
      expect(inside.name).toBe("Router.send")
      expect(inside.attributes.get("shard")).toBe(7)
      // Its parent is what was current before, and it ends with the effect.
      expect(yield* currentSpanName).toEqual(Option.none())
    }))

  it.effect("runs the effect as it is, with no span, while tracing is disabled", () =>
    Effect.gen(function*() {
      const inside = yield* currentSpanName.pipe(withHotSpan("Router.send"))
      expect(inside).toEqual(Option.none())
      expect(yield* Effect.succeed(42).pipe(withHotSpan("Router.send"))).toBe(42)
      expect(yield* Effect.flip(Effect.fail("no").pipe(withHotSpan("Router.send")))).toBe("no")
    }).pipe(Effect.provide(Layer.setTracerEnabled(false))))
})
