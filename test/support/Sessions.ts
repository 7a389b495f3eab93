/**
 * Sessions as a tenant and the simulated phone see them, for e2e tests and the chaos run: create, link by QR,
 * poll status through the gateway.
 */
import type { SessionId } from "@wacluster/domain/Ids"
import { call, field, text } from "./Gateway.js"
import type { WaSimControl } from "./WaSimControl.js"

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls every `everyMs` until `check` passes, or throws with the last value seen after `ms`. */
export const eventually = async <A>(
  what: string,
  probe: () => Promise<A>,
  check: (value: A) => boolean,
  ms = 30_000,
  everyMs = 100
): Promise<A> => {
  const deadline = Date.now() + ms
  let last: A | undefined
  while (Date.now() < deadline) {
    last = await probe()
    if (check(last)) return last
    await sleep(everyMs)
  }
  throw new Error(`${what}: never happened; last seen ${JSON.stringify(last)}`)
}

export interface TestSession {
  readonly id: SessionId
  readonly key: string
}

export interface LinkedSession extends TestSession {
  readonly jid: string
  readonly phoneNumber: string
}

export const sessionsOf = (gateway: string, tenantToken: string, sim: WaSimControl) => {
  const create = async (name: string, city = "berlin"): Promise<TestSession> => {
    const reply = await call(gateway, "POST", "/sessions", { bearer: tenantToken, json: { name, city } })
    if (reply.status !== 201) throw new Error(`create ${name}: ${reply.status} ${JSON.stringify(reply.body)}`)
    return { id: text(reply.body, "session", "id") as SessionId, key: text(reply.body, "apiKey", "key") }
  }

  /** The status reply; 503 (the session is moving or its node is gone) is an answer here, not an error. */
  const status = (session: TestSession) =>
    call(gateway, "GET", `/sessions/${session.id}/status`, { apiKey: session.key })

  const statusIs = (session: TestSession, wanted: string, ms = 60_000, everyMs?: number) =>
    eventually(
      `${session.id} ${wanted}`,
      () => status(session),
      (reply) => {
        if (reply.status !== 200 && reply.status !== 503) {
          throw new Error(`status of ${session.id}: ${reply.status} ${JSON.stringify(reply.body)}`)
        }
        return reply.status === 200 && field(reply.body, "status") === wanted
      },
      ms,
      everyMs
    ).then((reply) => reply.body)

  const rawQr = (session: TestSession, everyMs?: number) =>
    eventually(
      `a QR code for ${session.id}`,
      () => call(gateway, "GET", `/sessions/${session.id}/qr?format=raw`, { apiKey: session.key }),
      (reply) => reply.status === 200,
      60_000,
      everyMs
    ).then((reply) => text(reply.body, "qr"))

  /**
   * Creates a session and links it by scanning its QR code with the simulated phone. Asked every 250 ms, not 100:
   * many links at once polling every 100 ms took a good part of the two cores from the nodes doing the linking.
   */
  const link = async (name: string, phoneNumber: string, city?: string): Promise<LinkedSession> => {
    const session = await create(name, city)
    const jid = await sim.scan(await rawQr(session, 250), phoneNumber)
    await statusIs(session, "connected", 60_000, 250)
    return { ...session, jid, phoneNumber }
  }

  /** Links `count` sessions, `concurrency` at a time, with phone numbers from `firstPhone` up. */
  const linkMany = async (count: number, options: { prefix: string; firstPhone: number; concurrency?: number }) => {
    const linked: Array<LinkedSession> = []
    let next = 0
    const worker = async () => {
      while (next < count) {
        const index = next++
        linked[index] = await link(`${options.prefix}-${index}`, String(options.firstPhone + index))
      }
    }
    await Promise.all(Array.from({ length: options.concurrency ?? 8 }, worker))
    return linked
  }

  /** The sessions (of `all`) that do not answer connected right now. */
  const notConnected = async (all: ReadonlyArray<TestSession>) => {
    const replies = await Promise.all(all.map(async (session) => ({ session, reply: await status(session) })))
    return replies.filter(({ reply }) => reply.status !== 200 || field(reply.body, "status") !== "connected")
  }

  /**
   * Waits until every one of `all` answers connected at the same time. In between it asks again only for those not
   * connected yet: all of them every 100 ms would load the very nodes logging them in (a whole-cluster restart of
   * 200 sessions took half as long again that way).
   */
  const untilAllConnected = async (all: ReadonlyArray<TestSession>, what: string, ms?: number) => {
    let waiting = all
    const stillWaiting = async (among: ReadonlyArray<TestSession>) =>
      (await notConnected(among)).map(({ session }) => session)
    await eventually(
      `${what}: every session connected`,
      async () => {
        waiting = await stillWaiting(waiting)
        if (waiting.length === 0) waiting = await stillWaiting(all)
        return waiting.map((session) => session.id)
      },
      (ids) => ids.length === 0,
      ms
    )
  }

  return { create, status, statusIs, rawQr, link, linkMany, notConnected, untilAllConnected }
}
