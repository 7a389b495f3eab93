/**
 * The control API: JSON over HTTP, acting as the phone and the network for tests and for `pnpm start --simulate`.
 * Every failure is `{ "error": { "code", "message" } }` with a 4xx status for bad input or an unknown device.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Schema } from "effect"
import type { WaSim } from "../WaSim.js"
import { simError, WaSimError } from "../WaSimError.js"

const ScanBody = Schema.Struct({ qr: Schema.String, phoneNumber: Schema.String })
const PairingBody = Schema.Struct({ phoneNumber: Schema.String, code: Schema.String })
const MessageBody = Schema.Struct({ from: Schema.String, text: Schema.String })
const ReceiptBody = Schema.Struct({ messageId: Schema.String, status: Schema.Literal("delivered", "read") })

const errorResponse = (error: WaSimError) =>
  HttpServerResponse.unsafeJson({ error: { code: error.code, message: error.message } }, { status: error.status })

/** Decodes a JSON body; anything unreadable or of the wrong shape is the caller's mistake (400). */
const body = <A, I>(schema: Schema.Schema<A, I>) =>
  HttpServerRequest.schemaBodyJson(schema).pipe(
    Effect.mapError((cause) =>
      simError("invalid_request", cause._tag === "ParseError" ? cause.message : "the body is not valid JSON", cause)
    )
  )

const jidParam = Effect.flatMap(HttpRouter.params, (params) => {
  const raw = params.jid ?? ""
  try {
    return Effect.succeed(decodeURIComponent(raw))
  } catch (cause) {
    return Effect.fail(simError("invalid_request", `the device id ${raw} is not URL-encoded correctly`, cause))
  }
})

const ok = (value: unknown) => Effect.succeed(HttpServerResponse.unsafeJson(value))

/** The control API as an http app; routing failures and errors all end as JSON error responses. */
export const app = (sim: WaSim) =>
  HttpRouter.empty.pipe(
    // Launchers read the endpoint and root key here: a node pins the key before it connects.
    HttpRouter.get("/healthz", ok({ ok: true, waSimUrl: sim.url, rootPublicKey: sim.rootPublicKey })),
    HttpRouter.get("/stats", Effect.flatMap(sim.stats, ok)),
    HttpRouter.get("/qr", Effect.flatMap(sim.pendingQrs, ok)),
    HttpRouter.get("/devices", Effect.flatMap(sim.devices, ok)),
    HttpRouter.post(
      "/scan",
      Effect.flatMap(body(ScanBody), ({ phoneNumber, qr }) => sim.scan(qr, phoneNumber)).pipe(Effect.flatMap(ok))
    ),
    HttpRouter.get("/pairing", Effect.flatMap(sim.pendingPairings, ok)),
    HttpRouter.post(
      "/pairing",
      Effect.flatMap(body(PairingBody), ({ code, phoneNumber }) => sim.enterCode(phoneNumber, code)).pipe(
        Effect.flatMap(ok)
      )
    ),
    HttpRouter.post(
      "/devices/:jid/logout",
      Effect.flatMap(jidParam, sim.logout).pipe(Effect.flatMap(() => ok({ ok: true })))
    ),
    HttpRouter.post(
      "/devices/:jid/conflict",
      Effect.flatMap(jidParam, sim.conflict).pipe(Effect.flatMap((live) => ok({ live })))
    ),
    HttpRouter.post(
      "/devices/:jid/drop",
      Effect.flatMap(jidParam, sim.drop).pipe(Effect.flatMap((live) => ok({ live })))
    ),
    HttpRouter.post(
      "/devices/:jid/stall",
      Effect.flatMap(jidParam, sim.stall).pipe(Effect.flatMap((live) => ok({ live })))
    ),
    HttpRouter.post(
      "/devices/:jid/messages",
      Effect.all([jidParam, body(MessageBody)]).pipe(
        Effect.flatMap(([jid, { from, text }]) => sim.sendText(jid, from, text)),
        Effect.flatMap(ok)
      )
    ),
    HttpRouter.get("/devices/:jid/sent", Effect.flatMap(jidParam, sim.sentMessages).pipe(Effect.flatMap(ok))),
    HttpRouter.post(
      "/devices/:jid/receipts",
      Effect.all([jidParam, body(ReceiptBody)]).pipe(
        Effect.flatMap(([jid, { messageId, status }]) => sim.receipt(jid, messageId, status)),
        Effect.flatMap(() => ok({ ok: true }))
      )
    ),
    Effect.catchAll((error) =>
      Effect.succeed(
        error instanceof WaSimError
          ? errorResponse(error)
          : errorResponse(
            simError(
              "not_found",
              "no such route (see GET /healthz, /stats, /qr, /pairing, /devices, POST /scan, /pairing)"
            )
          )
      )
    )
  )
