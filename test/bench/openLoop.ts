/**
 * The open-loop load generator's HTTP/1.1 client: keep-alive sockets, one request at a time on each (no pipelining),
 * each request one prepared buffer written in one call, and of its answer only the status line and the body's length
 * read. It runs on the same cores as the cluster it measures, so what it spends is taken from the cluster: undici's
 * Pool spent 0.09–0.11 ms of CPU a request at 2,000 requests a second, a seventh of the whole steady phase's CPU.
 *
 * Every request still goes out on its own socket in its own write, as from as many separate clients: nothing here
 * batches requests, so the gateway reads and answers each one alone.
 */
import { connect, type Socket } from "node:net"

export interface Answer {
  readonly status: number
  /** The body of an answer that is not a success (2xx), to say what went wrong; empty otherwise. */
  readonly failure: string
}

const HEADERS_END = Buffer.from("\r\n\r\n")
const CHUNKED_END = Buffer.from("0\r\n\r\n")

/** One keep-alive connection: a request is written, then its answer read whole before the next may go. */
class Connection {
  private pending: { resolve: (answer: Answer) => void; reject: (error: Error) => void } | undefined
  private buffered: Buffer = Buffer.alloc(0)
  closed = false

  constructor(readonly socket: Socket, private readonly released: (connection: Connection) => void) {
    socket.setNoDelay(true)
    socket.on("data", (chunk: Buffer) => this.received(chunk))
    const fail = (error: Error) => {
      this.closed = true
      const pending = this.pending
      this.pending = undefined
      pending?.reject(error)
    }
    socket.on("error", fail)
    socket.on("close", () => fail(new Error("connection closed")))
  }

  send(request: Buffer): Promise<Answer> {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject }
      this.socket.write(request)
    })
  }

  private received(chunk: Buffer) {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk])
    const headersEnd = this.buffered.indexOf(HEADERS_END)
    if (headersEnd < 0) return
    const head = this.buffered.toString("latin1", 0, headersEnd)
    const status = Number(head.slice(9, 12))
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)
    const bodyStart = headersEnd + HEADERS_END.length
    let end: number
    if (length !== null) {
      end = bodyStart + Number(length[1])
      if (this.buffered.length < end) return
    } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
      const last = this.buffered.indexOf(CHUNKED_END, bodyStart)
      if (last < 0) return
      end = last + CHUNKED_END.length
    } else {
      end = bodyStart
    }
    const failure = status >= 200 && status < 300 ? "" : this.buffered.toString("utf8", bodyStart, end)
    this.buffered = this.buffered.subarray(end)
    const pending = this.pending
    this.pending = undefined
    if (/\r\nconnection:\s*close/i.test(head)) this.closed = true
    else this.released(this)
    pending?.resolve({ status, failure })
  }
}

/** How long a connection may stay idle and still be used: less than a server's keep-alive timeout. */
const IDLE_LIMIT_MS = 4_000

/** Connections to one HTTP server, reused last-in first-out, opened as requests need them. */
export const makeClient = (url: string) => {
  const { hostname, port } = new URL(url)
  const idle: Array<{ readonly connection: Connection; readonly since: number }> = []
  const all = new Set<Connection>()
  const release = (connection: Connection) => {
    if (!connection.closed) idle.push({ connection, since: performance.now() })
  }
  const open = () =>
    new Promise<Connection>((resolve, reject) => {
      const socket = connect({ host: hostname, port: Number(port) })
      socket.once("error", reject)
      socket.once("connect", () => {
        socket.off("error", reject)
        const connection = new Connection(socket, release)
        all.add(connection)
        socket.on("close", () => all.delete(connection))
        resolve(connection)
      })
    })
  const take = async () => {
    for (let entry = idle.pop(); entry !== undefined; entry = idle.pop()) {
      if (entry.connection.closed) continue
      // A server closes a keep-alive connection idle for its timeout (Node's: 5 s), and a request written as it
      // does is reset: a connection idle that long is closed here first, as undici's keepAliveTimeout (4 s) does.
      if (performance.now() - entry.since > IDLE_LIMIT_MS) entry.connection.socket.destroy()
      else return entry.connection
    }
    return open()
  }
  return {
    /** Sends `request` (a whole HTTP/1.1 request, keep-alive) on a free connection and reads its answer. */
    send: async (request: Buffer): Promise<Answer> => (await take()).send(request),
    close: () => {
      for (const connection of all) connection.socket.destroy()
    }
  }
}

/** A POST with a JSON body and the given headers, as bytes to write. */
export const jsonPost = (host: string, path: string, headers: Record<string, string>, body: string) => {
  const payload = Buffer.from(body)
  const lines = [
    `POST ${path} HTTP/1.1`,
    `host: ${host}`,
    "content-type: application/json",
    `content-length: ${payload.length}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)
  ]
  return Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`), payload])
}
