/**
 * A tenant's day through the typed client derived from the contract (HttpApiClient), against real processes: the
 * documents at /openapi.json and /docs, then every route a tenant and a session key use, answers decoded with the
 * contract's own schemas, failures as the contract's typed errors.
 */
import SwaggerParser from "@apidevtools/swagger-parser"
import { OpenApi } from "@effect/platform"
import { WaclusterApi } from "@wacluster/domain/Api"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { clientOf, fails, run } from "../support/Client.js"
import { type Fixture, startCluster } from "../support/ClusterFixture.js"
import { call } from "../support/Gateway.js"
import { eventually } from "../support/Sessions.js"

let fixture: Fixture
let gateway: string

beforeAll(async () => {
  fixture = await startCluster({ nodes: 1, env: { SESSION_SEND_INTERVAL: "50 millis" } })
  gateway = fixture.cluster.gatewayUrl
}, 180_000)

afterAll(async () => {
  await fixture?.stop()
}, 60_000)

describe("the API documents", () => {
  it("serves the contract as valid OpenAPI 3.1 at /openapi.json and Swagger UI at /docs", async () => {
    const served = await call(gateway, "GET", "/openapi.json")
    expect(served.status).toBe(200)
    expect(served.body).toEqual(JSON.parse(JSON.stringify(OpenApi.fromApi(WaclusterApi))))
    await SwaggerParser.validate(served.body as never)
    const docs = await fetch(`${gateway}/docs`)
    expect(docs.status).toBe(200)
    expect(docs.headers.get("content-type")).toContain("text/html")
    const page = await docs.text()
    expect(page).toContain("swagger-ui")
    expect(page).toContain("/sessions/{sessionId}/messages")
  })
})

describe("the typed client", () => {
  it("walks a session from creation to deletion", async () => {
    const admin = await run(clientOf(gateway, { bearer: fixture.cluster.adminToken }))
    const { token } = await run(admin.tenants.create({ payload: { name: "Typed" } }))
    const tenant = await run(clientOf(gateway, { bearer: token }))

    const created = await run(tenant.sessions.create({ payload: { name: "Typed-Support", city: "Medan" } }))
    expect(created.session.city).toBe("medan")
    const sessionId = created.session.id
    const path = { sessionId }
    const session = await run(clientOf(gateway, { apiKey: created.apiKey.key }))

    // Linked by scanning its QR code with the simulated phone.
    const qr = await eventually(
      "a QR code",
      () => Effect.runPromise(Effect.either(session.sessionAccess.qr({ path, urlParams: { format: "raw" } }))),
      (answer) => answer._tag === "Right"
    )
    if (qr._tag !== "Right" || qr.right.qr === null) throw new Error("no QR code")
    const jid = await fixture.sim.scan(qr.right.qr, "6281100004001")
    await eventually(
      "connected",
      () => run(session.sessionStatus.status({ path })),
      (status) => status.status === "connected"
    )
    // The detail is the owner's live answer: linked number included the moment the status says connected.
    const detail = await run(session.sessionLifecycle.get({ path }))
    expect(detail).toMatchObject({ name: "Typed-Support", status: "connected", phoneNumber: "6281100004001" })

    // A second key, with its own limits.
    const issued = await run(tenant.sessionManagement.createKey({
      path,
      payload: { name: "typed", rateLimit: { messagesPerHour: 100 } }
    }))
    expect(issued.rateLimit).toMatchObject({ requestsPerMinute: null, messagesPerHour: 100 })
    const second = await run(clientOf(gateway, { apiKey: issued.key }))

    // Send, with an idempotency key; it reaches the contact and shows in the history.
    const accepted = await run(second.sessionAccess.sendMessage({
      path,
      payload: { to: "+62 811 0000 4999", text: "halo dari klien" },
      headers: { "idempotency-key": "typed-1" }
    }))
    expect(accepted.status).toBe("queued")
    const again = await run(second.sessionAccess.sendMessage({
      path,
      payload: { to: "+62 811 0000 4999", text: "halo dari klien" },
      headers: { "idempotency-key": "typed-1" }
    }))
    expect(again.messageId).toBe(accepted.messageId)
    await eventually("the text delivered", () => fixture.sim.sent(jid), (sent) => sent.length === 1)
    const page = await eventually(
      "the text sent",
      () => run(session.messages.list({ path, urlParams: { direction: "outbound" } })),
      (history) => history.messages[0]?.status === "sent"
    )
    expect(page.messages.map((m) => m.text)).toEqual(["halo dari klien"])
    const one = await run(session.messages.get({ path: { ...path, messageId: accepted.messageId } }))
    expect(one).toMatchObject({ phoneNumber: "6281100004999", direction: "outbound" })
    const health = await run(session.sessionAccess.health({ path }))
    expect(health.connection).toMatchObject({ indicator: "green", phoneNumber: "6281100004001" })

    // Rename, stop, reconnect.
    expect((await run(session.sessionLifecycle.update({ path, payload: { name: "Typed-Renamed" } }))).name).toBe(
      "Typed-Renamed"
    )
    expect((await run(session.sessionLifecycle.stop({ path }))).status).toBe("disconnected")
    await run(session.sessionAccess.reconnect({ path }))
    await eventually(
      "connected again",
      () => run(session.sessionStatus.status({ path })),
      (status) => status.status === "connected"
    )

    // Failures arrive as the contract's typed errors.
    const other = await run(tenant.sessions.create({ payload: { name: "Typed-Other", city: "Medan" } }))
    const notFound = await fails(session.sessionLifecycle.get({ path: { sessionId: other.session.id } }))
    expect(notFound._tag).toBe("NotFound")
    const permanent = await fails(session.sessionLifecycle.update({ path, payload: { city: "Jakarta" } }))
    expect(permanent._tag).toBe("BadRequest")

    // Keys: list, revoke; then the session goes, device unlinked.
    const keys = await run(tenant.sessionManagement.listKeys({ path }))
    expect(keys.keys.map((k) => k.name)).toEqual(["default", "typed"])
    await run(tenant.sessionManagement.revokeKey({ path: { ...path, keyId: issued.id } }))
    const deleted = await run(tenant.sessionManagement.delete({ path }))
    expect(deleted).toMatchObject({ deleted: true, deviceUnlinked: true })
    const gone = await fails(tenant.sessionLifecycle.get({ path }))
    expect(gone._tag).toBe("NotFound")
  })
})
