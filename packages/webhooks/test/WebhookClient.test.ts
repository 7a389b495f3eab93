import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either } from "effect"
import { once } from "node:events"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { makePolicy } from "../src/TargetGuard.js"
import * as WebhookClient from "../src/WebhookClient.js"

/** A receiver on loopback answering as `handler` says; the requests it got. */
const receiver = (handler: (req: IncomingMessage, res: ServerResponse) => void) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const server = createServer(handler)
      server.listen(0, "127.0.0.1")
      await once(server, "listening")
      return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
    }),
    ({ server }) =>
      Effect.promise(() => {
        server.closeAllConnections()
        return new Promise((resolve) => server.close(resolve))
      })
  )

const client = (allow: ReadonlyArray<string>, timeout = Duration.seconds(2)) =>
  WebhookClient.make(Either.getOrThrow(makePolicy(allow)), timeout)

describe("WebhookClient", () => {
  it.scoped("posts the body with the headers; a 2xx is success", () =>
    Effect.gen(function*() {
      const got: Array<{ headers: IncomingMessage["headers"]; body: string }> = []
      const { url } = yield* receiver((req, res) => {
        let body = ""
        req.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")))
        req.on("end", () => {
          got.push({ headers: req.headers, body })
          res.writeHead(204).end()
        })
      })
      const result = yield* (yield* client(["127.0.0.0/8"])).post(`${url}/hook`, { "webhook-id": "evt_1" }, "{\"a\":1}")
      expect(result).toMatchObject({ succeeded: true, statusCode: 204, error: null })
      expect(got[0]?.body).toBe("{\"a\":1}")
      expect(got[0]?.headers["webhook-id"]).toBe("evt_1")
      expect(got[0]?.headers["content-type"]).toBe("application/json")
    }))

  it.scoped("a redirect is a failure and is not followed; an error answer is logged with an excerpt of its body", () =>
    Effect.gen(function*() {
      let followed = 0
      const { url } = yield* receiver((req, res) => {
        if (req.url === "/moved") return res.writeHead(307, { location: "/inside" }).end()
        if (req.url === "/inside") {
          followed++
          return res.writeHead(200).end()
        }
        res.writeHead(500).end(`boom ${"x".repeat(2_000)}`)
      })
      const posts = yield* client(["127.0.0.0/8"])
      const moved = yield* posts.post(`${url}/moved`, {}, "{}")
      expect(moved).toMatchObject({ succeeded: false, statusCode: 307 })
      expect(followed).toBe(0)
      const failed = yield* posts.post(`${url}/fails`, {}, "{}")
      expect(failed.succeeded).toBe(false)
      expect(failed.error?.startsWith("HTTP 500: boom xxx")).toBe(true)
      expect(failed.error?.length).toBeLessThanOrEqual(530)
    }))

  it.scoped("an endpoint that does not answer in time fails with a timeout", () =>
    Effect.gen(function*() {
      const { url } = yield* receiver(() => {
        // Never answers.
      })
      const result = yield* (yield* client(["127.0.0.0/8"], Duration.millis(300))).post(`${url}/slow`, {}, "{}")
      expect(result).toMatchObject({ succeeded: false, statusCode: null, error: "no answer within 300 ms" })
    }))

  it.scoped("refuses a target the policy does not allow, by literal address or by what a name resolves to", () =>
    Effect.gen(function*() {
      let reached = 0
      const { url } = yield* receiver((_req, res) => {
        reached++
        res.writeHead(200).end()
      })
      const posts = yield* client([])
      const literal = yield* posts.post(`${url}/hook`, {}, "{}")
      expect(literal.succeeded).toBe(false)
      expect(literal.error).toContain("refused: 127.0.0.1 is")
      const named = yield* posts.post(url.replace("127.0.0.1", "localhost"), {}, "{}")
      expect(named.succeeded).toBe(false)
      expect(named.error).toContain("refused: localhost resolves to")
      expect(reached).toBe(0)
    }))
})
