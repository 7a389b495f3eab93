/**
 * `POST /sessions/{sessionId}/messages` is the route high-volume tenants call thousands of times a second. When such
 * a request is plainly good (a session API key this gateway already holds a good answer for, that session's path, a
 * JSON body of a declared length within MAX_BODY_BYTES, no query string), it is answered here from the raw request,
 * without the HttpApi stack (routing, middlewares, schema-driven decoding and encoding), which cost the gateway more
 * than the rest of a send. What it runs is the route's own: the command `queueTextCommand` makes, sent with
 * `Router.sendThen` (Router.send's first attempt as a plain NATS request: a queued text is answered without a fiber,
 * which cut the gateway's CPU a send by two fifths and its allocation by half), the contract's checks of the body
 * and the headers (`plainSendMessage` and `isIdempotencyKey`, then the SendMessage schema for a body less plain),
 * and for every failure `routingErrors` and `ErrorResponses.fromCause`.
 *
 * Anything else goes the ordinary way, unchanged: a key not cached yet (the ordinary route caches it), a tenant token,
 * another route. A body that does not decode is handed over as it was read, so its 400 is the ordinary route's.
 */
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Router } from "@wacluster/cluster/Router"
import { isIdempotencyKey, plainSendMessage, SendMessage } from "@wacluster/domain/Api"
import type { AcceptedMessage } from "@wacluster/domain/Protocol"
import { DateTime, Effect, Either, Exit, Runtime, Schema } from "effect"
import { IncomingMessage, Server, type ServerResponse } from "node:http"
import { Credentials, type KeyCaller } from "../Auth.js"
import * as ErrorResponses from "../ErrorResponses.js"
import { callerOf } from "./Access.js"
import { routingErrors } from "./Routing.js"
import { asQueued, queueTextCommand } from "./SessionAccess.js"

/** Only session ids made of these characters: anything percent-encoded goes the ordinary way. */
const SEND_PATH = /^\/sessions\/([A-Za-z0-9_-]+)\/messages$/

const decodePayload = Schema.decodeUnknownEither(SendMessage)

/** AcceptedMessage as its schema encodes it, written without a Schema encode (one per send). */
const acceptedJson = ({ createdAt, messageId, status }: AcceptedMessage) =>
  ({ messageId, status, createdAt: DateTime.formatIso(createdAt) }) satisfies typeof AcceptedMessage.Encoded

type Ordinary = (request: IncomingMessage, response: ServerResponse) => void

/** A request the HTTP parser could have made, with `body` as its whole body, for the ordinary handler. */
const replayed = (request: IncomingMessage, body: Buffer) => {
  const copy = new IncomingMessage(request.socket)
  copy.method = request.method
  copy.url = request.url
  copy.headers = request.headers
  copy.rawHeaders = request.rawHeaders
  copy.httpVersion = request.httpVersion
  copy.httpVersionMajor = request.httpVersionMajor
  copy.httpVersionMinor = request.httpVersionMinor
  // Its body is all here: nothing is to be read from the socket for it, and once read it is complete (an incomplete
  // request that ends is taken for an aborted one, and its socket is destroyed).
  copy.complete = true
  copy._read = () => undefined
  copy.push(body)
  copy.push(null)
  return copy
}

const write = (response: ServerResponse, answer: HttpServerResponse.HttpServerResponse) => {
  response.writeHead(answer.status, answer.headers)
  if (answer.body._tag === "Uint8Array") response.end(answer.body.body)
  else response.end()
}

export const make = Effect.gen(function*() {
  const credentials = yield* Credentials
  const router = yield* Router
  const runFork = Runtime.runFork(yield* Effect.runtime<never>())

  const answer = (
    response: ServerResponse,
    caller: KeyCaller,
    payload: SendMessage,
    clientKey: string | undefined
  ) => {
    credentials.noteUse(caller.keyId)
    // A queued text's answer comes back without a fiber; only a failure takes one, to become its HTTP answer.
    router.sendThen(queueTextCommand(caller.sessionId, payload, clientKey, callerOf(caller)), (exit) => {
      if (Exit.isSuccess(exit)) {
        response.writeHead(202, { "content-type": "application/json" })
        response.end(JSON.stringify(acceptedJson(asQueued(exit.value))))
        return
      }
      runFork(
        Effect.failCause(exit.cause).pipe(
          routingErrors(caller.sessionId),
          Effect.catchAllCause(ErrorResponses.fromCause)
        )
      ).addObserver((failed) => {
        if (Exit.isSuccess(failed)) write(response, failed.value)
        else if (!response.headersSent) response.destroy()
      })
    })
  }

  /** Takes the request when it is one to answer here (true); leaves it untouched otherwise (false). */
  const take = (request: IncomingMessage, response: ServerResponse, ordinary: Ordinary): boolean => {
    if (request.method !== "POST" || request.url === undefined) return false
    const path = SEND_PATH.exec(request.url)
    if (path === null) return false
    const key = request.headers["x-api-key"]
    if (typeof key !== "string") return false
    const caller = credentials.cachedApiKey(key)
    if (caller === undefined || caller.sessionId !== path[1]) return false
    if (request.headers["content-type"]?.startsWith("application/json") !== true) return false
    const length = Number(request.headers["content-length"])
    if (!Number.isInteger(length) || length > ErrorResponses.MAX_BODY_BYTES) return false
    const clientKey = request.headers["idempotency-key"]
    if (clientKey !== undefined && (typeof clientKey !== "string" || !isIdempotencyKey(clientKey))) return false

    const chunks: Array<Buffer> = []
    // A client gone mid-body: nothing to answer (and its error must not go unheard).
    request.on("error", () => undefined)
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      const body = Buffer.concat(chunks)
      const json = Either.try((): unknown => JSON.parse(body.toString("utf8")))
      const payload = Either.flatMap(json, (json) => {
        const plain = plainSendMessage(json)
        return plain === undefined ? decodePayload(json) : Either.right(plain)
      })
      if (Either.isLeft(payload)) return ordinary(replayed(request, body), response)
      answer(response, caller, payload.right, clientKey)
    })
    return true
  }

  return { take }
})

/** An HTTP server whose requests meet `lane` first. */
export const server = (lane: Effect.Effect.Success<typeof make>) => {
  class FastLaneServer extends Server {
    override emit(event: string, ...args: Array<unknown>): boolean {
      if (event === "request") {
        const [request, response] = args as [IncomingMessage, ServerResponse]
        const ordinary: Ordinary = (request, response) => super.emit("request", request, response)
        if (lane.take(request, response, ordinary)) return true
      }
      return super.emit(event, ...args)
    }
  }
  return new FastLaneServer()
}
