/**
 * The phone and the network, for e2e tests: wa-sim's control API over plain HTTP, as a tester at a terminal
 * would call it.
 */
import { call, field, text } from "./Gateway.js"

const device = (jid: string) => `/devices/${encodeURIComponent(jid)}`

const ok = async (reply: Promise<{ status: number; body: unknown }>, what: string) => {
  const answer = await reply
  if (answer.status >= 300) throw new Error(`${what}: ${answer.status} ${JSON.stringify(answer.body)}`)
  return answer.body
}

export interface SimStats {
  readonly devices: number
  readonly liveSockets: number
  readonly overlaps: number
}

export const waSimControl = (controlUrl: string) => ({
  /** Links the device showing `qr` to the account of `phoneNumber`; returns the device JID. */
  scan: async (qr: string, phoneNumber: string) =>
    text(await ok(call(controlUrl, "POST", "/scan", { json: { qr, phoneNumber } }), "scan"), "jid"),
  /**
   * Types the pairing code shown by the session on the phone of `phoneNumber`; returns the device JID. Baileys hands
   * out the code without waiting for the server to take its request, so the code can reach the API a moment before
   * it reaches wa-sim: like a person typing it, this tries again for a few seconds while the sim knows no such code.
   */
  enterCode: async (phoneNumber: string, code: string) => {
    const deadline = Date.now() + 5_000
    for (;;) {
      const answer = await call(controlUrl, "POST", "/pairing", { json: { phoneNumber, code } })
      const notYet = answer.status === 404 && JSON.stringify(answer.body).includes("pairing_not_found")
      if (notYet && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100))
        continue
      }
      return text(await ok(Promise.resolve(answer), "pairing"), "jid")
    }
  },
  /**
   * `overlaps` counts logins whose older socket of the same device answered a liveness probe (a frozen peer does not
   * count). The sim answers once the probes of earlier logins have settled (up to its `livenessProbeMs`), so one read
   * at the end of a round is final.
   */
  stats: async () => (await ok(call(controlUrl, "GET", "/stats"), "stats")) as SimStats,
  devices: async () =>
    (await ok(call(controlUrl, "GET", "/devices"), "devices")) as ReadonlyArray<{
      readonly jid: string
      readonly phoneNumber: string
      readonly live: boolean
    }>,
  message: async (jid: string, from: string, body: string) =>
    text(
      await ok(call(controlUrl, "POST", `${device(jid)}/messages`, { json: { from, text: body } }), "message"),
      "id"
    ),
  sent: async (jid: string) =>
    (await ok(call(controlUrl, "GET", `${device(jid)}/sent`), "sent")) as ReadonlyArray<{
      readonly id: string
      /** null when the contact's phone could not decrypt it (see `error`). */
      readonly text: string | null
      readonly phoneNumber: string
      readonly error?: string
    }>,
  receipt: (jid: string, messageId: string, status: "delivered" | "read") =>
    ok(call(controlUrl, "POST", `${device(jid)}/receipts`, { json: { messageId, status } }), "receipt"),
  drop: (jid: string) => ok(call(controlUrl, "POST", `${device(jid)}/drop`), "drop"),
  conflict: (jid: string) => ok(call(controlUrl, "POST", `${device(jid)}/conflict`), "conflict"),
  logout: (jid: string) => ok(call(controlUrl, "POST", `${device(jid)}/logout`), "logout"),
  /** Whether the device has a live socket right now. */
  live: async (jid: string) => {
    const devices = (await ok(call(controlUrl, "GET", "/devices"), "devices")) as ReadonlyArray<unknown>
    return devices.some((entry) => field(entry, "jid") === jid && field(entry, "live") === true)
  }
})

export type WaSimControl = ReturnType<typeof waSimControl>
