import { Schema } from "effect"

/** What went wrong, stable for callers of the control API; each maps to one HTTP status. */
export const WaSimErrorCode = Schema.Literal(
  "invalid_request",
  "not_found",
  "qr_not_found",
  "qr_mismatch",
  "device_not_found",
  "device_offline",
  "pairing_failed",
  "pairing_not_found",
  "wrong_pairing_code",
  "message_not_found",
  "startup_failed",
  "state_file_invalid",
  "internal_error"
)
export type WaSimErrorCode = typeof WaSimErrorCode.Type

const statusByCode: Record<WaSimErrorCode, number> = {
  invalid_request: 400,
  not_found: 404,
  qr_not_found: 404,
  qr_mismatch: 409,
  device_not_found: 404,
  device_offline: 409,
  pairing_failed: 409,
  pairing_not_found: 404,
  wrong_pairing_code: 409,
  message_not_found: 404,
  startup_failed: 500,
  state_file_invalid: 500,
  internal_error: 500
}

export class WaSimError extends Schema.TaggedError<WaSimError>("@wacluster/wa-sim/WaSimError")("WaSimError", {
  code: WaSimErrorCode,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  get status(): number {
    return statusByCode[this.code]
  }
}

export const simError = (code: WaSimErrorCode, message: string, cause?: unknown): WaSimError =>
  new WaSimError(cause === undefined ? { code, message } : { code, message, cause })
