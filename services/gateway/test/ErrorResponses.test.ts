import { HttpServerRequest } from "@effect/platform"
import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import { RequestError, RouteNotFound } from "@effect/platform/HttpServerError"
import { describe, expect, it } from "@effect/vitest"
import { BadRequest, Conflict, NotFound, ServiceUnavailable, Unauthorized } from "@wacluster/domain/ApiErrors"
import { StoreError } from "@wacluster/store/Errors"
import { toResponse } from "../src/ErrorResponses.js"

const request = HttpServerRequest.fromWeb(new Request("http://localhost/sessions", { method: "POST" }))

const answer = (failure: unknown) => {
  const response = toResponse(failure)
  if (response === undefined) return undefined
  const body = response.body
  return {
    status: response.status,
    retryAfter: response.headers["retry-after"],
    json: body._tag === "Uint8Array" ? JSON.parse(new TextDecoder().decode(body.body)) : undefined
  }
}

describe("error responses", () => {
  it("give the contract's errors their status and the { error: { code, message } } body", () => {
    expect(answer(new BadRequest({ message: "bad", details: { field: "city" } }))).toEqual({
      status: 400,
      retryAfter: undefined,
      json: { error: { code: "bad_request", message: "bad", details: { field: "city" } } }
    })
    expect(answer(new Unauthorized({ message: "no" }))?.status).toBe(401)
    expect(answer(new NotFound({ message: "none" }))?.json).toEqual({ error: { code: "not_found", message: "none" } })
    expect(answer(new Conflict({ message: "connected", details: { status: "connected" } }))).toEqual({
      status: 409,
      retryAfter: undefined,
      json: { error: { code: "conflict", message: "connected", details: { status: "connected" } } }
    })
    const unavailable = answer(new ServiceUnavailable({ message: "later", retryAfterSeconds: 5 }))
    expect([unavailable?.status, unavailable?.retryAfter]).toEqual([503, "5"])
  })

  it("turn framework failures into 4xx: schema mismatch, body not JSON, unknown route", () => {
    const decode = answer(
      new HttpApiDecodeError({ issues: [{ _tag: "Type", path: ["name"], message: "Expected string" }], message: "" })
    )
    expect(decode?.status).toBe(400)
    expect(decode?.json.error.message).toBe("name: Expected string")
    const notJson = answer(new RequestError({ request, reason: "Decode", cause: new SyntaxError("Unexpected token") }))
    expect([notJson?.status, notJson?.json.error.message]).toEqual([400, "the request body is not valid JSON"])
    const tooBig = answer(new RequestError({ request, reason: "Decode", cause: new Error("maxBytes exceeded") }))
    expect(tooBig?.status).toBe(413)
    expect(answer(new RouteNotFound({ request }))?.status).toBe(404)
  })

  it("answer 503 with Retry-After when storage fails, since the request itself was fine", () => {
    const stored = answer(new StoreError({ message: "connection refused", cause: new Error("ECONNREFUSED") }))
    expect([stored?.status, stored?.retryAfter, stored?.json.error.code]).toEqual([503, "2", "unavailable"])
  })

  it("know nothing of other errors (the middleware logs them and answers 500)", () => {
    expect(answer(new Error("boom"))).toBeUndefined()
  })
})
