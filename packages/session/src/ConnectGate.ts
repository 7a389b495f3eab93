/**
 * The node's connect gate: at most `permits` WhatsApp connects run at once; the others wait their turn, first come
 * first served, and a released permit goes to exactly one of them.
 *
 * Effect's Semaphore is not used here: on every release it resumes each of its waiters, and all but one go back to
 * waiting. At a node's start thousands of sessions wait at this gate, and every finished login woke all of them: a
 * node logging 5,000 sessions back in spent its time and gigabytes of heap re-queueing waiters, its event loop
 * stalled for seconds, and connected sessions missed their keep-alives (the login storm never converged).
 *
 * Once a session has its turn it waits for the event loop's headroom (`LoopLag.headroom`) before it connects: only
 * the few holding a permit poll the loop's lateness, never the thousands in the queue.
 */
import { Effect } from "effect"

export interface ConnectGate {
  /**
   * Waits for a permit, interruptibly. Take it inside `Effect.uninterruptibleMask` (as `withPermit` does) and register
   * its release before restoring interruption: a permit handed over just as the fiber is interrupted must not be lost.
   */
  readonly take: Effect.Effect<void>
  /** Gives a permit back: to the longest waiting session, else to the gate. */
  readonly release: Effect.Effect<void>
  /** Runs `self` holding a permit. */
  readonly withPermit: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Permits free right now, and sessions waiting for one. */
  readonly state: Effect.Effect<{ readonly free: number; readonly waiting: number }>
}

interface Waiter {
  /** Handed a permit by a release. */
  served: boolean
  /** Interrupted before its turn: releases pass it by. */
  left: boolean
  resume: ((turn: Effect.Effect<void>) => void) | undefined
}

export const unsafeMake = (permits: number): ConnectGate => {
  let free = permits
  /** Waiters in arrival order; `head` is the index of the first one not yet served or passed by. */
  let queue: Array<Waiter> = []
  let head = 0
  const waiting = () => {
    let count = 0
    for (let i = head; i < queue.length; i++) if (queue[i]?.left === false) count++
    return count
  }

  const releaseUnsafe = () => {
    while (head < queue.length) {
      const next = queue[head]
      head++
      // Drop the served part once it is most of the array (shifting at every release would be O(waiters)).
      if (head > 1024 && head * 2 > queue.length) {
        queue = queue.slice(head)
        head = 0
      }
      if (next === undefined || next.left) continue
      next.served = true
      next.resume?.(Effect.void)
      return
    }
    free++
  }

  const take = Effect.suspend(() => {
    if (free > 0 && head === queue.length) {
      free--
      return Effect.void
    }
    const waiter: Waiter = { served: false, left: false, resume: undefined }
    queue.push(waiter)
    return Effect.async<void>((resume) => {
      if (waiter.served) return resume(Effect.void)
      waiter.resume = resume
      // Interrupted: still in the queue, it leaves it; served meanwhile, it passes the permit on.
      return Effect.sync(() => {
        if (waiter.served) releaseUnsafe()
        else waiter.left = true
      })
    })
  })

  return {
    take,
    release: Effect.sync(releaseUnsafe),
    withPermit: (self) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.zipRight(restore(take), Effect.ensuring(restore(self), Effect.sync(releaseUnsafe)))
      ),
    state: Effect.sync(() => ({ free, waiting: waiting() }))
  }
}

export const make = (permits: number): Effect.Effect<ConnectGate> => Effect.sync(() => unsafeMake(permits))
