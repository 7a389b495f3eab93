/**
 * Errors the HTTP API answers with. Handlers fail with the classes; on the wire every error is
 * `{ "error": { "code", "message", "details"? } }` with the status annotated here.
 */
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Schema } from "effect"

const errorFields = {
  message: Schema.String,
  details: Schema.optional(Schema.Unknown)
}

/** The wire form of an error class: a transformation to `{ error: { code, message, details? } }`. */
const onTheWire = <Self extends { readonly message: string; readonly details?: unknown }, I, R>(
  errorClass: Schema.Schema<Self, I, R>,
  tag: string,
  code: string,
  status: number,
  description: string
) =>
  Schema.transform(
    Schema.Struct({
      error: Schema.Struct({
        code: Schema.Literal(code),
        message: Schema.String,
        details: Schema.optional(Schema.Unknown)
      })
    }),
    errorClass,
    {
      strict: false,
      decode: ({ error }) => ({ _tag: tag, message: error.message, details: error.details }),
      encode: (_encoded, self) => ({
        error: self.details === undefined
          ? { code, message: self.message }
          : { code, message: self.message, details: self.details }
      })
    }
  ).annotations({ ...HttpApiSchema.annotations({ status }), identifier: `${tag}Error`, description })

export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", errorFields) {}
export const BadRequestJson = onTheWire(BadRequest, "BadRequest", "bad_request", 400, "The request is malformed")

export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", errorFields) {}
export const UnauthorizedJson = onTheWire(
  Unauthorized,
  "Unauthorized",
  "unauthorized",
  401,
  "Missing or invalid credentials"
)

export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", errorFields) {}
export const NotFoundJson = onTheWire(NotFound, "NotFound", "not_found", 404, "No such resource for these credentials")

export class Conflict extends Schema.TaggedError<Conflict>()("Conflict", errorFields) {}
export const ConflictJson = onTheWire(
  Conflict,
  "Conflict",
  "conflict",
  409,
  "The resource is not in a state that allows this request"
)

export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", errorFields) {}
export const PayloadTooLargeJson = onTheWire(
  PayloadTooLarge,
  "PayloadTooLarge",
  "payload_too_large",
  413,
  "The request body is too large"
)

export class ServiceUnavailable extends Schema.TaggedError<ServiceUnavailable>()("ServiceUnavailable", {
  ...errorFields,
  retryAfterSeconds: Schema.optional(Schema.Int)
}) {}
export const ServiceUnavailableJson = onTheWire(
  ServiceUnavailable,
  "ServiceUnavailable",
  "unavailable",
  503,
  "The node owning the session did not answer in time; retry after the Retry-After header"
)

/**
 * The header fields are set by the gateway and travel as headers (Retry-After, RateLimit-*), not in the body: a
 * client decoding the body has only the message and details.
 */
export class TooManyRequests extends Schema.TaggedError<TooManyRequests>()("TooManyRequests", {
  ...errorFields,
  retryAfterSeconds: Schema.optional(Schema.Int),
  /** What the binding limit allows per window, the window, and until it is whole again (RateLimit-* headers). */
  limit: Schema.optional(Schema.Int),
  windowSeconds: Schema.optional(Schema.Int),
  resetSeconds: Schema.optional(Schema.Int)
}) {}
export const TooManyRequestsJson = onTheWire(
  TooManyRequests,
  "TooManyRequests",
  "rate_limited",
  429,
  "A rate limit of the session or of the API key was reached; retry after the Retry-After header"
)

export class InternalError extends Schema.TaggedError<InternalError>()("InternalError", errorFields) {}
export const InternalErrorJson = onTheWire(
  InternalError,
  "InternalError",
  "internal",
  500,
  "An unexpected error; it has been logged"
)
