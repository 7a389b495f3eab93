/**
 * A mailbox with one reader: first in first out, bounded or not, and the reader waits while it is empty. A session
 * actor reads its commands from one (one at a time); the Outbox's writer reads the texts to queue from another (as
 * many as a statement takes). Every command and every text passes through them, thousands a second on a node, so a
 * wait is one callback, which the next offer calls.
 *
 * Effect's Queue did this before. Its `take` on an empty queue makes a Deferred (a copy of the whole Effect
 * prototype), a node of the takers' list and several closures, and the Deferred, once completed, holds the item
 * that completed it. At a steady 2,000 sends/s (bench:send, two nodes, alternated 20 s runs) a node's young
 * generation kept and promoted 2.6–3.7 MB a second of such per-command objects; with these mailboxes (and a
 * command's reply let go of once answered, SessionHost.postWithin) 1.1–1.6 MB, and its CPU a send went from
 * 0.168–0.177 ms to 0.157–0.160 ms.
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
  /** Wakes the waiting reader, which then takes what is queued. */
  let wakeReader: (() => void) | undefined

  const offer = (item: A): Offered => {
    if (!open) return "closed"
    if (queued.length >= capacity) return "full"
    queued.push(item)
    if (wakeReader !== undefined) {
      const wake = wakeReader
      wakeReader = undefined
      wake()
    }
    return "queued"
  }

  /**
   * `takeNow` once there is an item. The reader takes it when it runs again, not when it is woken: a reader
   * interrupted meanwhile never runs again, and what it was woken for stays queued (for the next reader, or `close`).
   * An interrupted reader is forgotten, so the next offer is queued, not lost.
   */
  const waitFor = <B>(takeNow: () => B | undefined): Effect.Effect<B> =>
    Effect.async<B>((resume) => {
      const now = takeNow()
      if (now !== undefined) return resume(Exit.succeed(now))
      if (!open) return resume(Effect.interrupt)
      const wake = () => resume(Effect.suspend(() => waitFor(takeNow)))
      wakeReader = wake
      return Effect.sync(() => {
        if (wakeReader === wake) wakeReader = undefined
      })
    })

  const take = waitFor(() => queued.shift())

  const takeUpTo = (max: number) => waitFor(() => (queued.length > 0 ? queued.splice(0, max) : undefined))

  const close = () => {
    open = false
    const left = queued
    queued = []
    return left
  }

  return { offer, take, takeUpTo, pollUpTo: (max) => queued.splice(0, max), close, isOpen: () => open }
}
