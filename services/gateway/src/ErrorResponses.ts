/**
 * Makes every failure of the HTTP API one JSON shape, `{ "error": { "code", "message", "details"? } }`:
 * the contract's own errors, but also what the framework raises before a handler runs (a body that is
 * not JSON or does not match the schema, an unknown route, an oversized body) and defects (logged, 500).
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import { RequestError, RouteNotFound } from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { WaclusterApi } from "@wacluster/domain/Api"
import {
  BadRequest,
  Conflict,
  InternalError,
  NotFound,
  PayloadTooLarge,
  ServiceUnavailable,
  TooManyRequests,
  Unauthorized
} from "@wacluster/domain/ApiErrors"
import { Cause, Effect, Option, Predicate } from "effect"

/** Request bodies above this size are refused with 413 before they are parsed. */
export const MAX_BODY_BYTES = 1024 * 1024

const body = (code: string, message: string, details?: unknown) => ({
  error: details === undefined ? { code, message } : { code, message, details }
})

const respond = (status: number, code: string, message: string, details?: unknown, headers?: Record<string, string>) =>
  HttpServerResponse.unsafeJson(body(code, message, details), { status, ...(headers ? { headers } : {}) })

const tooLarge = () => respond(413, "payload_too_large", `the request body exceeds ${MAX_BODY_BYTES} bytes`)

const fromDecodeError = (error: HttpApiDecodeError) => {
  const problems = error.issues.map((issue) => {
    const where = issue.path.length === 0 ? "request" : issue.path.map(String).join(".")
    return `${where}: ${issue.message}`
  })
  return respond(400, "bad_request", problems.join("; ") || error.message, {
    issues: error.issues.map((issue) => ({ path: issue.path.map(String), message: issue.message }))
  })
}

/** The JSON response for a failure or defect, or undefined when it is not one the API knows. */
export const toResponse = (failure: unknown) => {
  if (failure instanceof BadRequest) return respond(400, "bad_request", failure.message, failure.details)
  if (failure instanceof Unauthorized) return respond(401, "unauthorized", failure.message, failure.details)
  if (failure instanceof NotFound) return respond(404, "not_found", failure.message, failure.details)
  if (failure instanceof Conflict) return respond(409, "conflict", failure.message, failure.details)
  if (failure instanceof PayloadTooLarge) return respond(413, "payload_too_large", failure.message)
  if (failure instanceof ServiceUnavailable) {
    const retryAfter = failure.retryAfterSeconds ?? 2
    return respond(503, "unavailable", failure.message, failure.details, { "retry-after": String(retryAfter) })
  }
  if (failure instanceof TooManyRequests) {
    const retryAfter = failure.retryAfterSeconds ?? 1
    return respond(429, "rate_limited", failure.message, failure.details, {
      "retry-after": String(retryAfter),
      ...(failure.limit === undefined ? {} : {
        "ratelimit-limit": String(failure.limit),
        "ratelimit-remaining": "0",
        "ratelimit-reset": String(failure.resetSeconds ?? retryAfter),
        ...(failure.windowSeconds === undefined
          ? {}
          : { "ratelimit-policy": `${failure.limit};w=${failure.windowSeconds}` })
      })
    })
  }
  if (failure instanceof InternalError) return respond(500, "internal", failure.message)
  if (failure instanceof HttpApiDecodeError) return fromDecodeError(failure)
  if (failure instanceof RouteNotFound) {
    return respond(
      404,
      "not_found",
      `no route ${failure.request.method} ${failure.request.url}; see /cities, /sessions`
    )
  }
  if (Predicate.isTagged(failure, "StoreError")) {
    // Postgres is unreachable or failing: the request was fine, the caller should retry.
    return respond(503, "unavailable", "storage is unavailable; retry shortly", undefined, { "retry-after": "2" })
  }
  if (failure instanceof RequestError) {
    const cause = failure.cause instanceof Error ? failure.cause.message : ""
    if (cause.includes("maxBytes")) {
      return tooLarge()
    }
    return respond(400, "bad_request", "the request body is not valid JSON")
  }
  return undefined
}

/**
 * The response for whatever a request ended with: the API's JSON for a failure (or a framework error arriving as a
 * defect), a logged 500 for anything else. An interruption stays one.
 */
export const fromCause = <E>(cause: Cause.Cause<E>): Effect.Effect<HttpServerResponse.HttpServerResponse, E> => {
  if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
  // Some framework errors (a body that is not JSON) arrive as defects: look at the failure or defect alike.
  const failure: Option.Option<unknown> = Cause.failureOption(cause)
  const error = Option.getOrElse(failure, () => Cause.squash(cause))
  const response = toResponse(error)
  if (response === undefined) {
    return Effect.as(
      Effect.logError("unhandled error in request", cause),
      respond(500, "internal", "an unexpected error occurred; it has been logged")
    )
  }
  return Predicate.isTagged(error, "StoreError")
    ? Effect.as(Effect.logWarning("storage unavailable", cause), response)
    : Effect.succeed(response)
}

/** A declared body over the limit is refused before a byte of it is read (the client still gets the answer). */
const declaredTooLarge = Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
  const length = Number(request.headers["content-length"] ?? "0")
  return Number.isFinite(length) && length > MAX_BODY_BYTES
})

export const layer = HttpApiBuilder.middleware(
  WaclusterApi,
  (app) =>
    Effect.flatMap(declaredTooLarge, (declared) =>
      declared
        ? Effect.succeed(tooLarge())
        : app).pipe(
        HttpIncomingMessage.withMaxBodySize(Option.some(FileSystem.Size(MAX_BODY_BYTES))),
        Effect.catchAllCause(fromCause)
      )
)
