/**
 * A mailbox with one reader: first in first out, bounded or not, and the reader waits while it is empty. A session
 * actor reads its commands from one (one at a time); the Outbox's writer reads the texts to queue from another (as
 * many as a statement takes). Every command and every text passes through them, thousands a second on a node, so a
 * wait is one callback, and an item offered to a waiting reader is handed to it.
 *
 * Effect's Queue did this before. Its `take` on an empty queue makes a Deferred (a copy of the whole Effect
 * prototype), a node of the takers' list and several closures, and the Deferred, once completed, holds the item
 * that completed it. At a steady 2,000 sends/s (bench:send, two nodes, alternated 20 s runs) a node's young
 * generation kept and promoted 2.5–5.1 MB a second of such per-command objects; with these mailboxes (and a
 * command's reply let go of once answered, SessionHost.postWithin) 1.3–2.9 MB, and its CPU a send went from
 * 0.172–0.183 ms to 0.138–0.167 ms.
 */
import { Effect, Exit } from "effect"

/** What became of an offer: queued for the reader, refused because the mailbox is full, or because it is closed. */
export type Offered = "queued" | "full" | "closed"

export interface Mailbox<A> {
  readonly offer: (item: A) => Offered
  /** The oldest item, once there is one. Interrupted when the mailbox is closed and empty. */
  readonly take: Effect.Effect<A>
  /** The oldest items, at least one and at most `max`, once there is one. Interrupted as `take` is. */
  readonly takeUpTo: (max: number) => Effect.Effect<ReadonlyArray<A>>
  /** The oldest items there are now, at most `max` (perhaps none). */
  readonly pollUpTo: (max: number) => ReadonlyArray<A>
  /** Refuses every later offer, and returns what was still queued (oldest first) for its senders to be answered. */
  readonly close: () => ReadonlyArray<A>
  readonly isOpen: () => boolean
}

/** A mailbox holding at most `capacity` items (`Infinity`: unbounded). Only one reader may wait at a time. */
export const make = <A extends object>(capacity: number): Mailbox<A> => {
  let queued: Array<A> = []
  let open = true
  /** The waiting reader: handed the next item offered. */
  let reader: ((item: A) => void) | undefined

  const offer = (item: A): Offered => {
    if (!open) return "closed"
    if (reader !== undefined) {
      const handTo = reader
      reader = undefined
      handTo(item)
      return "queued"
    }
    if (queued.length >= capacity) return "full"
    queued.push(item)
    return "queued"
  }

  /** Waits for the next offer; an interrupted reader is forgotten, so the next offer is queued, not lost. */
  const waitFor = <B>(resume: (next: Effect.Effect<B>) => void, taken: (item: A) => B) => {
    if (!open) return resume(Effect.interrupt)
    const handTo = (item: A) => resume(Exit.succeed(taken(item)))
    reader = handTo
    return Effect.sync(() => {
      if (reader === handTo) reader = undefined
    })
  }

  const take = Effect.async<A>((resume) => {
    const first = queued.shift()
    return first !== undefined ? resume(Exit.succeed(first)) : waitFor(resume, (item) => item)
  })

  const takeUpTo = (max: number) =>
    Effect.async<ReadonlyArray<A>>((resume) =>
      queued.length > 0 ? resume(Exit.succeed(queued.splice(0, max))) : waitFor(resume, (item) => [item])
    )

  const close = () => {
    open = false
    const left = queued
    queued = []
    return left
  }

  return { offer, take, takeUpTo, pollUpTo: (max) => queued.splice(0, max), close, isOpen: () => open }
}
