/** The WebSocket endpoint clients connect to (`/ws/chat`, like web.whatsapp.com), on a plain node http server. */
import { createServer } from "node:http"
import { WebSocketServer } from "ws"
import { ChatConnection, type ConnectionHost } from "./ChatConnection.js"

export interface ChatServer {
  readonly port: number
  /** Destroys every connection, then stops listening. */
  readonly close: () => Promise<void>
}

/**
 * `idleTimeoutMs`: a connection that sent nothing for this long is cut (like a lost TCP connection), so a peer that
 * vanished without closing does not stay "live" and turn its successor's login into an overlap. 0 disables it.
 */
export const startChatServer = (
  host: string,
  port: number,
  idleTimeoutMs: number,
  connectionHost: ConnectionHost
): Promise<ChatServer> =>
  new Promise((resolve, reject) => {
    const http = createServer((_request, response) => {
      response.writeHead(426, { "content-type": "text/plain" }).end("WebSocket only, at /ws/chat\n")
    })
    // perMessageDeflate off: WhatsApp does not negotiate it and it costs memory per socket.
    const wss = new WebSocketServer({ server: http, path: "/ws/chat", perMessageDeflate: false })
    const connections = new Set<ChatConnection>()
    wss.on("connection", (ws) => {
      const connection = new ChatConnection(ws, connectionHost)
      connections.add(connection)
      ws.on("close", () => connections.delete(connection))
    })
    const idleCheck = idleTimeoutMs > 0
      ? setInterval(() => {
        const deadline = Date.now() - idleTimeoutMs
        for (const connection of connections) {
          if (connection.lastHeardAt < deadline) connection.terminate()
        }
      }, Math.min(5_000, Math.max(50, idleTimeoutMs / 4)))
      : undefined
    idleCheck?.unref()
    const onListenError = (error: Error) => {
      clearInterval(idleCheck)
      reject(error)
    }
    http.once("error", onListenError)
    http.listen(port, host, () => {
      http.off("error", onListenError)
      const close = () =>
        new Promise<void>((done) => {
          clearInterval(idleCheck)
          for (const connection of connections) connection.terminate()
          wss.close()
          http.closeAllConnections()
          http.close(() => done())
        })
      const address = http.address()
      resolve({ port: typeof address === "object" && address !== null ? address.port : port, close })
    })
  })
