/**
 * An Effect scheduler that never keeps Node's event loop waiting for long.
 *
 * Effect's default scheduler runs ready fibers in microtasks and falls back to a timer only after 2,048 microtask
 * hops in a row, counted per fiber. With thousands of fibers ready at once (a node logging a thousand WhatsApp
 * sessions back in) the microtask queue then never empties: timers and socket reads wait for seconds. That starved
 * the lease renewals of a node reconnecting 2,000 sessions (stalls of 4 s and more with little garbage collection)
 * until it fenced all its shards, stopped every session and started over.
 *
 * This one gives fibers slices of about `budgetMs`: once fibers have run that long since the slice began, every
 * fiber that becomes ready waits for the next slice, which starts from `setImmediate` — after the event loop has run
 * due timers and read the sockets. Ready fibers still run back to back within a slice.
 */
import { Layer, Scheduler } from "effect"

export const make = (budgetMs = 10): Scheduler.Scheduler => {
  /** When the current slice began. */
  let sliceStartedAt = performance.now()
  /** Fibers that became ready after the slice ran out, in order. */
  let waiting: Array<() => void> = []
  let nextSliceScheduled = false
  const nextSlice = () => {
    nextSliceScheduled = false
    sliceStartedAt = performance.now()
    const ready = waiting
    waiting = []
    for (const drain of ready) drain()
  }
  const getRunner = Scheduler.SchedulerRunner.cached((depth, drain) => {
    if (performance.now() - sliceStartedAt < budgetMs) {
      Promise.resolve(undefined).then(() => drain(depth + 1))
      return
    }
    waiting.push(() => drain(0))
    if (!nextSliceScheduled) {
      nextSliceScheduled = true
      setImmediate(nextSlice)
    }
  })
  return {
    shouldYield: Scheduler.defaultShouldYield,
    scheduleTask: (task, priority, fiber) => getRunner(fiber).scheduleTask(task, priority)
  }
}

/** Makes every fiber of the program use `make(budgetMs)`. */
export const layer = (budgetMs?: number): Layer.Layer<never> => Layer.setScheduler(make(budgetMs))
