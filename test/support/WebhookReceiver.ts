/**
 * A tenant's webhook receiver for tests: a real Express app on loopback that records every request (headers, raw
 * body, parsed body), answers as told (status, delay), and can be stopped and started again on its port.
 */
import express from "express"
import { once } from "node:events"
import type { Server } from "node:http"
import type { AddressInfo, Socket } from "node:net"

export interface ReceivedWebhook {
  readonly path: string
  readonly headers: Record<string, string>
  readonly raw: string
  readonly body: { readonly id: string; readonly type: string; readonly data: Record<string, unknown> }
  readonly at: number
}

export interface Answer {
  readonly status: number
  readonly delayMs?: number
}

export interface WebhookReceiver {
  readonly url: (path?: string) => string
  readonly received: Array<ReceivedWebhook>
  /** How the next requests are answered (default 200 at once). */
  answer: (path: string) => Answer
  readonly stop: () => Promise<void>
  readonly start: () => Promise<void>
}

export const startReceiver = async (
  mount?: (app: express.Express, received: Array<ReceivedWebhook>) => void
): Promise<WebhookReceiver> => {
  const received: Array<ReceivedWebhook> = []
  const app = express()
  mount?.(app, received)
  let port = 0
  let server: Server | undefined
  const sockets = new Set<Socket>()
  const receiver: WebhookReceiver = {
    url: (path = "/hook") => `http://127.0.0.1:${port}${path}`,
    received,
    answer: () => ({ status: 200 }),
    stop: async () => {
      const open = server
      server = undefined
      if (open === undefined) return
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => open.close(resolve))
    },
    start: async () => {
      server = app.listen(port, "127.0.0.1")
      server.on("connection", (socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
      })
      await once(server, "listening")
      port = (server.address() as AddressInfo).port
    }
  }
  app.post(/.*/, express.raw({ type: "*/*", limit: "5mb" }), async (req, res) => {
    const raw = Buffer.isBuffer(req.body) ? req.body.toString("utf8") : ""
    const headers: Record<string, string> = {}
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === "string") headers[name] = value
    }
    received.push({ path: req.path, headers, raw, body: JSON.parse(raw), at: Date.now() })
    const { delayMs = 0, status } = receiver.answer(req.path)
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))
    res.sendStatus(status)
  })
  await receiver.start()
  return receiver
}
