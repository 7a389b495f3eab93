import SwaggerParser from "@apidevtools/swagger-parser"
import { OpenApi } from "@effect/platform"
import { describe, expect, it } from "vitest"
import { WaclusterApi } from "../src/Api.js"

/** The document the gateway serves at /openapi.json. */
const document = OpenApi.fromApi(WaclusterApi)

describe("the OpenAPI document", () => {
  it("is valid OpenAPI 3.1", async () => {
    expect(document.openapi).toBe("3.1.0")
    // validate() dereferences in place: give it a copy.
    const validated = await SwaggerParser.validate(structuredClone(document) as never)
    expect(validated.info.title).toBe("wacluster")
  })

  it("documents every route of the product with its credentials and its error shape", () => {
    const routes = Object.entries(document.paths).flatMap(([path, item]) =>
      Object.keys(item).filter((key) => ["get", "post", "patch", "delete"].includes(key)).map((m) => `${m} ${path}`)
    )
    expect(routes).toEqual(expect.arrayContaining([
      "get /sessions/{sessionId}/status",
      "get /sessions/{sessionId}",
      "patch /sessions/{sessionId}",
      "delete /sessions/{sessionId}",
      "post /sessions/{sessionId}/stop",
      "post /sessions/{sessionId}/reconnect",
      "get /sessions/{sessionId}/health",
      "get /sessions/{sessionId}/qr",
      "post /sessions/{sessionId}/pairing-code",
      "post /sessions/{sessionId}/messages",
      "get /sessions/{sessionId}/messages",
      "get /sessions/{sessionId}/messages/{messageId}",
      "post /sessions/{sessionId}/keys",
      "get /sessions/{sessionId}/keys",
      "delete /sessions/{sessionId}/keys/{keyId}",
      "post /sessions",
      "get /sessions",
      "get /cities",
      "post /tenants",
      "get /admin/cluster"
    ]))
    const status = document.paths["/sessions/{sessionId}/status"]?.get
    expect(status?.security).toEqual(expect.arrayContaining([{ apiKey: [] }, { tenantToken: [] }]))
    expect(Object.keys(status?.responses ?? {})).toEqual(expect.arrayContaining(["200", "401", "404", "429", "503"]))
    expect(JSON.stringify(document.components.schemas)).toContain("rate_limited")
  })
})
