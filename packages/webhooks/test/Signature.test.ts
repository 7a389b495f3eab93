import { describe, expect, it } from "@effect/vitest"
import { Webhook as StandardWebhook } from "standardwebhooks"
import { Webhook as SvixWebhook } from "svix"
import * as Signature from "../src/Signature.js"

const body = JSON.stringify({ id: "evt_1", type: "session.status", data: { sessionId: "sess_1" } })

describe("Signature", () => {
  it("makes whsec_ secrets of 256 random bits", () => {
    const secret = Signature.newSecret()
    expect(secret.startsWith("whsec_")).toBe(true)
    expect(Buffer.from(secret.slice(6), "base64")).toHaveLength(32)
    expect(Signature.newSecret()).not.toBe(secret)
  })

  it("signs so that both the standardwebhooks and svix libraries verify, with one secret or during a rotation", () => {
    const [current, previous] = [Signature.newSecret(), Signature.newSecret()]
    const now = Math.floor(Date.now() / 1000)
    for (const secrets of [[current], [current, previous]]) {
      const headers = Signature.headers(secrets, "evt_1", now, body)
      for (const secret of secrets) {
        expect(new StandardWebhook(secret).verify(body, headers)).toEqual(JSON.parse(body))
        // svix answers nothing, and throws when no signature matches.
        const svix = new SvixWebhook(secret)
        expect(() =>
          svix.verify(body, {
            "svix-id": headers["webhook-id"] ?? "",
            "svix-timestamp": headers["webhook-timestamp"] ?? "",
            "svix-signature": headers["webhook-signature"] ?? ""
          })
        ).not.toThrow()
        expect(() => svix.verify(body.replace("sess_1", "sess_2"), headers)).toThrow()
      }
    }
  })

  it("a signature fails for another secret, another body, another id or an old timestamp", () => {
    const secret = Signature.newSecret()
    const now = Math.floor(Date.now() / 1000)
    const headers = Signature.headers([secret], "evt_1", now, body)
    expect(() => new StandardWebhook(Signature.newSecret()).verify(body, headers)).toThrow()
    expect(() => new StandardWebhook(secret).verify(body.replace("sess_1", "sess_2"), headers)).toThrow()
    expect(() => new StandardWebhook(secret).verify(body, { ...headers, "webhook-id": "evt_2" })).toThrow()
    const stale = Signature.headers([secret], "evt_1", now - 3600, body)
    expect(() => new StandardWebhook(secret).verify(body, stale)).toThrow()
  })
})
