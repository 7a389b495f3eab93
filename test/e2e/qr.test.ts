/**
 * `GET /sessions/{sessionId}/qr` through the gateway: the owner node hands over the QR string, the gateway draws
 * it. The PNG is decoded back with a real QR reader and must give exactly the raw string.
 */
import jsqr from "jsqr"
import { PNG } from "pngjs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Fixture, startCluster } from "../support/ClusterFixture.js"
import { call, field, text } from "../support/Gateway.js"

let fixture: Fixture
let gateway: string

const createTenant = async (name: string) => {
  const reply = await call(gateway, "POST", "/tenants", { bearer: fixture.cluster.adminToken, json: { name } })
  expect(reply.status).toBe(201)
  return text(reply.body, "token")
}

const createSession = async (token: string, name: string) => {
  const reply = await call(gateway, "POST", "/sessions", { bearer: token, json: { name, city: "jakarta" } })
  expect(reply.status, JSON.stringify(reply.body)).toBe(201)
  return { id: text(reply.body, "session", "id"), key: text(reply.body, "apiKey", "key") }
}

/** The raw QR once the session shows one (the first code takes a moment to arrive). */
const rawQr = async (sessionId: string, credentials: { apiKey: string } | { bearer: string }) => {
  for (let i = 0; i < 100; i++) {
    const reply = await call(gateway, "GET", `/sessions/${sessionId}/qr?format=raw`, credentials)
    if (reply.status === 200) return reply.body
    expect(reply.status, JSON.stringify(reply.body)).toBe(409)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error("no QR code appeared")
}

const fetchImage = async (path: string, apiKey: string) => {
  const response = await fetch(`${gateway}${path}`, { headers: { "x-api-key": apiKey } })
  return { status: response.status, type: response.headers.get("content-type"), body: await response.arrayBuffer() }
}

beforeAll(async () => {
  fixture = await startCluster({ nodes: 1 })
  gateway = fixture.cluster.gatewayUrl
}, 120_000)

afterAll(async () => {
  await fixture?.stop()
}, 60_000)

describe("QR codes through the API", () => {
  it("gives the raw string, a PNG that decodes to exactly that string, and an SVG", async () => {
    const token = await createTenant("qr")
    const session = await createSession(token, "Support-Jakarta-Prod")
    const raw = await rawQr(session.id, { apiKey: session.key })
    expect(field(raw, "sessionId")).toBe(session.id)
    expect(field(raw, "status")).toBe("connecting")
    expect(field(raw, "reason")).toBe("qr_pending")
    const qr = text(raw, "qr")
    expect(Date.parse(text(raw, "expiresAt"))).toBeGreaterThan(Date.now())

    // The default format is PNG. The code may rotate between calls, so compare with the code shown right after.
    const png = await fetchImage(`/sessions/${session.id}/qr`, session.key)
    expect(png.status).toBe(200)
    expect(png.type).toBe("image/png")
    const image = PNG.sync.read(Buffer.from(png.body))
    const decoded = jsqr.default(new Uint8ClampedArray(image.data), image.width, image.height)
    const current = text(await rawQr(session.id, { apiKey: session.key }), "qr")
    expect([qr, current]).toContain(decoded?.data)

    const svg = await fetchImage(`/sessions/${session.id}/qr?format=svg`, session.key)
    expect(svg.status).toBe(200)
    expect(svg.type).toBe("image/svg+xml")
    expect(new TextDecoder().decode(svg.body)).toMatch(/^<svg[\s\S]*<\/svg>\s*$/)
  })

  it("accepts the tenant token of the owning tenant, and nobody else's credentials", async () => {
    const token = await createTenant("owner")
    const session = await createSession(token, "Owned")
    const other = await createTenant("stranger")
    const otherSession = await createSession(other, "Theirs")

    expect(field(await rawQr(session.id, { bearer: token }), "sessionId")).toBe(session.id)

    const strangerToken = await call(gateway, "GET", `/sessions/${session.id}/qr?format=raw`, { bearer: other })
    expect(strangerToken.status).toBe(404)
    const strangerKey = await call(gateway, "GET", `/sessions/${session.id}/qr?format=raw`, {
      apiKey: otherSession.key
    })
    expect(strangerKey.status).toBe(404)
    expect(field(strangerKey.body, "error", "code")).toBe("not_found")

    const nobody = await call(gateway, "GET", `/sessions/${session.id}/qr`)
    expect(nobody.status).toBe(401)
    expect(text(nobody.body, "error", "message")).toContain("x-api-key")
    const badKey = await call(gateway, "GET", `/sessions/${session.id}/qr`, { apiKey: "wak_nope" })
    expect(badKey.status).toBe(401)
  })

  it("refuses an unknown format and a malformed session id with 400", async () => {
    const token = await createTenant("formats")
    const session = await createSession(token, "Formats")
    const gif = await call(gateway, "GET", `/sessions/${session.id}/qr?format=gif`, { apiKey: session.key })
    expect(gif.status).toBe(400)
    expect(field(gif.body, "error", "code")).toBe("bad_request")
    const badId = await call(gateway, "GET", "/sessions/nope/qr", { bearer: token })
    expect(badId.status).toBe(400)
  })
})
