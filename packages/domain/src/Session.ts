/**
 * Session states exactly as the product documents them, and the reasons DESIGN.md attaches to them.
 */
import { Schema } from "effect"

export const SessionStatus = Schema.Literal("connecting", "connected", "disconnected", "expired").annotations({
  title: "session status",
  description: "connecting: setup or reconnect in progress; connected: ready for traffic; " +
    "disconnected: not connected; expired: the QR code timed out before a scan"
})
export type SessionStatus = typeof SessionStatus.Type

export const SessionReason = Schema.Literal(
  "qr_pending",
  "pairing",
  "reconnecting",
  "connection_lost",
  "proxy_unreachable",
  "stopped",
  "logged_out",
  "conflict",
  "failing",
  "qr_timeout"
).annotations({ title: "session status reason" })
export type SessionReason = typeof SessionReason.Type

/** What the tenant asked for; the owner node converges the live session towards it. */
export const DesiredState = Schema.Literal("running", "stopped")
export type DesiredState = typeof DesiredState.Type

/** Derived from status for the status API: green/red in the product's dashboard. */
export const SessionHealth = Schema.Literal("healthy", "degraded", "unhealthy").annotations({
  title: "session health",
  description: "healthy when connected, degraded while connecting, unhealthy when disconnected or expired"
})
export type SessionHealth = typeof SessionHealth.Type

export const healthOf = (status: SessionStatus): SessionHealth =>
  status === "connected" ? "healthy" : status === "connecting" ? "degraded" : "unhealthy"

export const SessionName = Schema.Trim.pipe(
  Schema.minLength(1, { message: () => "name must not be empty" }),
  Schema.maxLength(100, { message: () => "name must be at most 100 characters" }),
  Schema.annotations({ title: "session name", examples: ["Support-Jakarta-Prod"] })
)
