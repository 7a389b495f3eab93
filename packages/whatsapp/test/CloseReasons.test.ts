import { describe, expect, it } from "@effect/vitest"
import { DisconnectReason } from "@whiskeysockets/baileys"
import { closeReasonOf } from "../src/BaileysDriver.js"

describe("Baileys close codes", () => {
  it("map every DisconnectReason onto the product's reasons", () => {
    const mapped = Object.fromEntries(
      Object.entries(DisconnectReason)
        .filter(([name]) => Number.isNaN(Number(name)))
        .map(([name, code]) => [name, closeReasonOf(Number(code), "", false)])
    )
    expect(mapped).toEqual({
      connectionClosed: "connection_lost",
      connectionLost: "connection_lost",
      connectionReplaced: "conflict",
      timedOut: "connection_lost",
      loggedOut: "logged_out",
      badSession: "connection_lost",
      restartRequired: "restart_required",
      multideviceMismatch: "logged_out",
      forbidden: "logged_out",
      unavailableService: "connection_lost"
    })
  })

  it("tell an expired set of QR codes from a timed-out connection", () => {
    expect(closeReasonOf(DisconnectReason.timedOut, "QR refs attempts ended", false)).toBe("qr_timeout")
    expect(closeReasonOf(DisconnectReason.timedOut, "Connection was lost", false)).toBe("connection_lost")
  })

  it("blame the proxy when the connect never got through it, whatever Baileys reports", () => {
    expect(closeReasonOf(DisconnectReason.timedOut, "WebSocket Error (connect ECONNREFUSED)", true)).toBe(
      "proxy_unreachable"
    )
    expect(closeReasonOf(undefined, "closed", true)).toBe("proxy_unreachable")
    expect(closeReasonOf(undefined, "closed", false)).toBe("connection_lost")
  })
})
