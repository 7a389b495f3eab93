/**
 * Spans on the paths every request takes. Nothing exports spans yet (the services run with tracing disabled), and
 * `Effect.withSpan` costs even then: it makes a no-op span and sets it as the parent, which copies the fiber's
 * references on the way in and out. On the send path that measured as a fifth or more of a text's CPU.
 */
import { Effect, FiberRef, type Tracer } from "effect"

/** `Effect.withSpan` while tracing is enabled; the effect as it is otherwise. Never captures a stack trace. */
export const withHotSpan =
  (name: string, options?: Tracer.SpanOptions) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.flatMap(
      FiberRef.get(FiberRef.currentTracerEnabled),
      (enabled) => enabled ? Effect.withSpan(self, name, { ...options, captureStackTrace: false }) : self
    )
