/**
 * Session routes a tenant token or the session's own key may call. A key reaches only its session; a tenant
 * only its own sessions; anything else is the same 404 as a session that does not exist.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Router } from "@wacluster/cluster/Router"
import { type SendMessage, WaclusterApi } from "@wacluster/domain/Api"
import { Conflict, InternalError } from "@wacluster/domain/ApiErrors"
import type { SessionId } from "@wacluster/domain/Ids"
import {
  AcceptedMessage,
  type Caller,
  GetHealth,
  GetQr,
  type QrCode,
  QueueText,
  Reconnect,
  RequestPairingCode
} from "@wacluster/domain/Protocol"
import { Sessions } from "@wacluster/store/Sessions"
import { DateTime, Effect, Option } from "effect"
import { randomUUID } from "node:crypto"
import { QrImages } from "../QrImages.js"
import { authorize, currentCaller, NO_CHECK, storeTrouble } from "./Access.js"
import { routingErrors, sessionNotFound } from "./Routing.js"

/** Why a session shows no QR code, in words a tenant can act on. */
const noQr = (code: QrCode) => {
  const details = { status: code.status, reason: code.reason }
  switch (code.status) {
    case "connected":
      return new Conflict({ message: "the session is connected: there is no QR code to scan", details })
    case "expired":
      return new Conflict({ message: "the QR code expired: reconnect the session to get a new one", details })
    case "disconnected":
      return new Conflict({
        message: `the session is disconnected (${code.reason ?? "unknown"}): reconnect it first`,
        details
      })
    case "connecting":
      return new Conflict({
        message: "no QR code yet: the session is connecting (it may log in with saved credentials); retry shortly",
        details
      })
  }
}

/**
 * The command that queues a caller's text (the route's handler and the send fast lane both send it). Without the
 * caller's idempotency key, one of our own: a request the router repeats (a lost reply, an owner moving) queues the
 * text once. The two kinds never collide.
 */
export const queueTextCommand = (
  sessionId: SessionId,
  payload: SendMessage,
  clientKey: string | undefined,
  caller: Caller
) =>
  new QueueText({
    sessionId,
    to: payload.to,
    text: payload.text,
    idempotencyKey: clientKey === undefined ? `gateway:${randomUUID()}` : `client:${clientKey}`,
    caller
  }, NO_CHECK)

/** A repeat gets the first answer, whatever happened to the text since. */
export const asQueued = (accepted: AcceptedMessage) =>
  accepted.status === "queued" ? accepted : new AcceptedMessage({ ...accepted, status: "queued" }, NO_CHECK)

/** Queues a text of a caller allowed on the session. */
export const queueText = (
  sessionId: SessionId,
  payload: SendMessage,
  clientKey: string | undefined,
  caller: Caller
) =>
  Effect.flatMap(Router, (router) =>
    router.send(queueTextCommand(sessionId, payload, clientKey, caller)).pipe(
      Effect.map(asQueued),
      routingErrors(sessionId)
    ))

export const SessionAccessLive = HttpApiBuilder.group(
  WaclusterApi,
  "sessionAccess",
  (handlers) =>
    Effect.gen(function*() {
      const router = yield* Router
      const sessions = yield* Sessions
      const images = yield* QrImages

      return handlers.handle("pairingCode", ({ path, payload }) =>
        Effect.gen(function*() {
          yield* authorize(path.sessionId)
          return yield* router.send(
            new RequestPairingCode({
              sessionId: path.sessionId,
              phoneNumber: payload.phoneNumber,
              caller: yield* currentCaller
            })
          ).pipe(
            Effect.catchTag(
              "PairingUnavailable",
              (error) =>
                new Conflict({ message: error.message, details: { status: error.status, reason: error.reason } })
            ),
            routingErrors(path.sessionId)
          )
        })).handle("health", ({ path }) =>
          Effect.gen(function*() {
            yield* authorize(path.sessionId)
            return yield* router.send(new GetHealth({ sessionId: path.sessionId, caller: yield* currentCaller })).pipe(
              routingErrors(path.sessionId)
            )
          })).handle("sendMessage", ({ headers, path, payload }) =>
          Effect.gen(function*() {
            yield* authorize(path.sessionId)
            return yield* queueText(path.sessionId, payload, headers["idempotency-key"], yield* currentCaller)
          }))
        .handle("reconnect", ({ path }) =>
          Effect.gen(function*() {
            yield* authorize(path.sessionId)
            // A stopped session runs again, wherever it runs next (recorded before its owner hears).
            const resumed = yield* sessions.setDesiredState(path.sessionId, "running").pipe(
              Effect.catchAll(storeTrouble("resuming the session"))
            )
            if (Option.isNone(resumed)) {
              return yield* sessionNotFound(path.sessionId)
            }
            return yield* router.send(new Reconnect({ sessionId: path.sessionId, caller: yield* currentCaller })).pipe(
              routingErrors(path.sessionId)
            )
          })).handle("qr", ({ path, urlParams }) =>
          Effect.gen(function*() {
            yield* authorize(path.sessionId)
            const code = yield* router.send(new GetQr({ sessionId: path.sessionId, caller: yield* currentCaller }))
              .pipe(
                routingErrors(path.sessionId)
              )
            if (code.qr === null) {
              return yield* noQr(code)
            }
            const format = urlParams.format ?? "png"
            if (format === "raw") {
              return code
            }
            const headers = {
              "cache-control": "no-store",
              ...(code.expiresAt === null ? {} : { expires: DateTime.toDateUtc(code.expiresAt).toUTCString() })
            }
            const rendered = format === "png"
              ? Effect.map(
                images.png(code.qr),
                (png) => HttpServerResponse.uint8Array(png, { contentType: "image/png", headers })
              )
              : Effect.map(
                images.svg(code.qr),
                (svg) => HttpServerResponse.text(svg, { contentType: "image/svg+xml", headers })
              )
            return yield* rendered.pipe(
              Effect.catchTag("QrRenderError", (error) =>
                Effect.zipRight(
                  Effect.logError("QR code could not be drawn", error.cause),
                  new InternalError({ message: "the QR code could not be drawn" })
                ))
            )
          }))
    })
)
