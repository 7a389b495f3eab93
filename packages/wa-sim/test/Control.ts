/** A tiny client of the sim's control API (JSON over HTTP), as other services and tests use it. */
import { Effect } from "effect"
import { type Auth, connect, makeAuth, waitForClose, waitForQr } from "./BaileysClient.js"

export interface ControlResponse {
  readonly status: number
  readonly body: unknown
}

export const request = (
  controlUrl: string,
  method: "GET" | "POST",
  path: string,
  body?: unknown
): Effect.Effect<ControlResponse> =>
  Effect.promise(async () => {
    const response = await fetch(`${controlUrl}${path}`, {
      method,
      ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
      headers: { "content-type": "application/json" }
    })
    return { status: response.status, body: await response.json() }
  })

export const devicePath = (jid: string, action: string) => `/devices/${encodeURIComponent(jid)}/${action}`

/** The jid in a `POST /scan` answer. */
export const jidOf = (response: ControlResponse): string => {
  const body = response.body
  if (typeof body === "object" && body !== null && "jid" in body && typeof body.jid === "string") return body.jid
  throw new Error(`no jid in ${response.status} ${JSON.stringify(body)}`)
}

/**
 * Links a fresh Baileys auth state to `phoneNumber` the way a person does: the client shows a QR code, the "phone"
 * scans it through the control API, and the client is told to restart (515). Returns the linked auth state.
 */
export const linkDevice = (sim: { readonly url: string; readonly controlUrl: string }, phoneNumber: string) =>
  Effect.scoped(Effect.gen(function*() {
    const auth: Auth = makeAuth()
    const client = yield* connect(sim.url, auth)
    const qr = yield* waitForQr(client)
    const scanned = yield* request(sim.controlUrl, "POST", "/scan", { qr, phoneNumber })
    const closedWith = yield* waitForClose(client)
    return { auth, jid: jidOf(scanned), scanStatus: scanned.status, closedWith, qr }
  }))
