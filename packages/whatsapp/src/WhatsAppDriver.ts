/**
 * The port every WhatsApp implementation provides to the session actor: one live socket per connect,
 * its events as a stream, and the operations a linked device can perform. The Baileys driver and the
 * in-process driver implement the same port.
 */
import type { SessionId } from "@wacluster/domain/Ids"
import type { Fence } from "@wacluster/store/Fence"
import { Context, Data, Schema } from "effect"
import type { Effect, Scope, Stream } from "effect"
import type { SessionProxy } from "./SessionProxy.js"

/** Why a socket closed, already mapped from the implementation's codes onto the product's reasons. */
export const CloseReason = Schema.Literal(
  /** Network or server trouble: reconnect with backoff. */
  "connection_lost",
  /** The proxy could not be reached or refused us: rotate it and reconnect with backoff. */
  "proxy_unreachable",
  /** WhatsApp asks for an immediate reconnect (after pairing): not a failure. */
  "restart_required",
  /** The phone unlinked the device (401): credentials are void. */
  "logged_out",
  /** Another socket took over this device (440): someone else may be running the session. */
  "conflict",
  /** Every QR code expired without a scan. */
  "qr_timeout"
)
export type CloseReason = typeof CloseReason.Type

export type SocketEvent = Data.TaggedEnum<{
  /** A new QR code to scan (each replaces the previous one). */
  Qr: { readonly qr: string; readonly expiresAt: Date }
  /** Linked and ready for traffic. */
  Open: { readonly phoneNumber: string; readonly jid: string }
  /** The socket is gone; the driver opens no new one by itself. */
  Closed: { readonly reason: CloseReason; readonly detail: string }
  /** An incoming text from a contact. */
  MessageReceived: {
    readonly waMessageId: string
    readonly from: string
    readonly text: string
    readonly timestamp: Date
  }
  /** A status change of a message this device sent. */
  Receipt: { readonly waMessageId: string; readonly status: "delivered" | "read"; readonly at: Date }
}>
export const SocketEvent = Data.taggedEnum<SocketEvent>()

export class DriverError extends Data.TaggedError("DriverError")<{
  readonly operation: string
  readonly message: string
  /**
   * WhatsApp answered and refused (a send it will not take, whatever the connection): trying again will not
   * help. Absent for failures of the path (timeouts, a socket that closed), which a later attempt may overcome.
   */
  readonly refused?: boolean
  readonly cause?: unknown
}> {}

/** One live connection. Closing the scope it was opened in closes the socket. */
export interface WhatsAppSocket {
  readonly events: Stream.Stream<SocketEvent>
  /** Links by phone number instead of QR: returns the 8-character code to type on the phone. */
  readonly requestPairingCode: (phoneNumber: string) => Effect.Effect<string, DriverError>
  /** A fresh WhatsApp message id for this device, for a send that must keep its id across attempts. */
  readonly newMessageId: Effect.Effect<string>
  /**
   * Sends a text and waits for WhatsApp's server acknowledgement. With `waMessageId`, under that id: sending again
   * under the same id is the same message to WhatsApp and the recipient.
   */
  readonly sendText: (
    to: string,
    text: string,
    waMessageId?: string
  ) => Effect.Effect<{ readonly waMessageId: string }, DriverError>
  /** Unlinks the device; the socket then closes with `logged_out`. */
  readonly logout: Effect.Effect<void, DriverError>
}

export interface ConnectOptions {
  readonly sessionId: SessionId
  /** The owner's shard and epoch: every auth-state write the driver makes is fenced with it. */
  readonly fence: Fence
  /** The session's city proxy; none means a direct connection. */
  readonly proxy?: SessionProxy | undefined
}

export class WhatsAppDriver extends Context.Tag("@wacluster/whatsapp/WhatsAppDriver")<WhatsAppDriver, {
  readonly name: string
  readonly connect: (options: ConnectOptions) => Effect.Effect<WhatsAppSocket, DriverError, Scope.Scope>
  /** Forgets the session's credentials (after a logout or a delete). */
  readonly forget: (sessionId: SessionId) => Effect.Effect<void, DriverError>
}>() {}
