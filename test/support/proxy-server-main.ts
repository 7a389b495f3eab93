/**
 * A real proxy for tests, as its own process (plain Node, no dependencies): SOCKS5 with username/password auth
 * (RFC 1928 + RFC 1929, CONNECT only) or HTTP CONNECT with `Proxy-Authorization: Basic`. It records every
 * credential it is offered and serves them on a control port (`GET /seen`; `GET /health` answers once the proxy
 * listens). Credentials whose username matches the reject pattern are refused, like a residential provider whose
 * sticky exit went away.
 *
 *   tsx test/support/proxy-server-main.ts --kind socks5 --port 7000 --control-port 7001 [--reject 'session-dead']
 *
 * Each flag can also come from the environment (PROXY_KIND, PROXY_PORT, PROXY_CONTROL_PORT, PROXY_REJECT), which
 * is how ProxyServer.ts starts it.
 */
import * as http from "node:http"
import * as net from "node:net"

const option = (flag: string, env: string): string | undefined => {
  const index = process.argv.indexOf(`--${flag}`)
  const value = index === -1 ? undefined : process.argv[index + 1]
  return value ?? process.env[env]
}

const kind = option("kind", "PROXY_KIND") ?? "socks5"
const port = Number(option("port", "PROXY_PORT") ?? "0")
const controlPort = Number(option("control-port", "PROXY_CONTROL_PORT") ?? "0")
const rejectSource = option("reject", "PROXY_REJECT")
const reject = rejectSource === undefined || rejectSource === "" ? undefined : new RegExp(rejectSource)

if (kind !== "socks5" && kind !== "http") {
  process.stderr.write(`unknown --kind ${kind}; use socks5 or http\n`)
  process.exit(2)
}

interface Credential {
  readonly username: string
  readonly password: string
}

const seen: Array<Credential> = []
const isAccepted = (credential: Credential) => reject === undefined || !reject.test(credential.username)

const record = (credential: Credential) => {
  seen.push(credential)
  process.stdout.write(`${JSON.stringify({ seen: credential, accepted: isAccepted(credential) })}\n`)
}

/** Opens the target and splices the two sockets together once `onOpen` has answered the client. */
const tunnel = (
  client: net.Socket,
  host: string,
  targetPort: number,
  head: Buffer,
  onOpen: (target: net.Socket) => void,
  onError: (error: NodeJS.ErrnoException) => void
) => {
  const target = net.connect({ host, port: targetPort })
  target.once("connect", () => {
    target.removeAllListeners("error")
    target.on("error", () => client.destroy())
    client.on("error", () => target.destroy())
    onOpen(target)
    if (head.length > 0) target.write(head)
    client.pipe(target)
    target.pipe(client)
  })
  target.once("error", onError)
}

// ---- SOCKS5 ----

/** Reads exact byte counts from a socket; the handshake is a fixed sequence of small messages. */
const reader = (socket: net.Socket) => {
  let buffered = Buffer.alloc(0)
  let wake: (() => void) | undefined
  let ended = false
  const onData = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk])
    wake?.()
  }
  socket.on("data", onData)
  socket.once("close", () => {
    ended = true
    wake?.()
  })
  const read = async (count: number): Promise<Buffer> => {
    while (buffered.length < count) {
      if (ended) throw new Error("client went away")
      await new Promise<void>((resolve) => (wake = resolve))
    }
    const out = buffered.subarray(0, count)
    buffered = buffered.subarray(count)
    return out
  }
  /** Stops reading and returns what arrived after the handshake. */
  const release = (): Buffer => {
    socket.pause()
    socket.removeListener("data", onData)
    return buffered
  }
  return { read, release }
}

const socksReplyCode = (error: NodeJS.ErrnoException): number => {
  switch (error.code) {
    case "ECONNREFUSED":
      return 0x05
    case "ENETUNREACH":
      return 0x03
    case "EHOSTUNREACH":
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return 0x04
    default:
      return 0x01
  }
}

const socksReply = (code: number) => Buffer.from([0x05, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0])

const socksSession = async (client: net.Socket) => {
  const { read, release } = reader(client)
  const [version, methodCount] = await read(2)
  if (version !== 0x05 || methodCount === undefined) return client.destroy()
  const methods = await read(methodCount)
  if (!methods.includes(0x02)) {
    // We only speak username/password (RFC 1929): "no acceptable methods".
    client.end(Buffer.from([0x05, 0xff]))
    return
  }
  client.write(Buffer.from([0x05, 0x02]))

  const [authVersion, userLength] = await read(2)
  if (authVersion !== 0x01 || userLength === undefined) return client.destroy()
  const username = (await read(userLength)).toString("utf8")
  const [passwordLength] = await read(1)
  const password = (await read(passwordLength ?? 0)).toString("utf8")
  const credential = { username, password }
  record(credential)
  if (!isAccepted(credential)) {
    client.end(Buffer.from([0x01, 0x01]))
    return
  }
  client.write(Buffer.from([0x01, 0x00]))

  const [requestVersion, command, , addressType] = await read(4)
  if (requestVersion !== 0x05) return client.destroy()
  let host: string
  if (addressType === 0x01) {
    host = [...(await read(4))].join(".")
  } else if (addressType === 0x03) {
    const [length] = await read(1)
    host = (await read(length ?? 0)).toString("utf8")
  } else if (addressType === 0x04) {
    const bytes = await read(16)
    host = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16)).join(":")
  } else {
    client.end(socksReply(0x08))
    return
  }
  const targetPort = (await read(2)).readUInt16BE(0)
  if (command !== 0x01) {
    client.end(socksReply(0x07))
    return
  }
  const head = release()
  tunnel(
    client,
    host,
    targetPort,
    head,
    () => client.write(socksReply(0x00)),
    (error) => client.end(socksReply(socksReplyCode(error)))
  )
}

// ---- HTTP CONNECT ----

const parseBasic = (header: string | undefined): Credential | undefined => {
  const match = /^Basic\s+(\S+)$/i.exec(header ?? "")
  if (match?.[1] === undefined) return undefined
  const decoded = Buffer.from(match[1], "base64").toString("utf8")
  const colon = decoded.indexOf(":")
  return colon === -1
    ? { username: decoded, password: "" }
    : { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

const parseAuthority = (authority: string): { host: string; port: number } | undefined => {
  const colon = authority.lastIndexOf(":")
  if (colon === -1) return undefined
  const port = Number(authority.slice(colon + 1))
  const host = authority.slice(0, colon).replace(/^\[|\]$/g, "")
  return Number.isInteger(port) && port > 0 && port < 65536 && host !== "" ? { host, port } : undefined
}

const refuse = (client: net.Socket, status: string, extra = "") =>
  client.end(`HTTP/1.1 ${status}\r\n${extra}Content-Length: 0\r\nConnection: close\r\n\r\n`)

const httpConnect = (request: http.IncomingMessage, client: net.Socket, head: Buffer) => {
  client.on("error", () => client.destroy())
  const credential = parseBasic(request.headers["proxy-authorization"])
  if (credential === undefined) {
    refuse(client, "407 Proxy Authentication Required", "Proxy-Authenticate: Basic realm=\"test\"\r\n")
    return
  }
  record(credential)
  if (!isAccepted(credential)) {
    refuse(client, "407 Proxy Authentication Required", "Proxy-Authenticate: Basic realm=\"test\"\r\n")
    return
  }
  const target = parseAuthority(request.url ?? "")
  if (target === undefined) {
    refuse(client, "400 Bad Request")
    return
  }
  tunnel(
    client,
    target.host,
    target.port,
    head,
    () => client.write("HTTP/1.1 200 Connection Established\r\n\r\n"),
    () => refuse(client, "502 Bad Gateway")
  )
}

// ---- control ----

const control = http.createServer((request, response) => {
  if (request.url === "/health") {
    response.writeHead(200, { "content-type": "text/plain" }).end("ok")
  } else if (request.url === "/seen") {
    response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(seen))
  } else {
    response.writeHead(404).end()
  }
})

const proxy = kind === "socks5"
  ? net.createServer((client) => {
    client.on("error", () => client.destroy())
    socksSession(client).catch(() => client.destroy())
  })
  : http.createServer((_request, response) => {
    // Only tunnels: plain proxied requests are not something WhatsApp sockets need.
    response.writeHead(405, { allow: "CONNECT" }).end()
  }).on("connect", httpConnect)

proxy.once("error", (error) => {
  process.stderr.write(`proxy could not listen on ${port}: ${error.message}\n`)
  process.exit(1)
})
proxy.listen({ host: "127.0.0.1", port }, () => {
  const address = proxy.address()
  const bound = typeof address === "object" && address !== null ? address.port : port
  control.listen({ host: "127.0.0.1", port: controlPort }, () => {
    process.stdout.write(`${kind} proxy listening on 127.0.0.1:${bound}, control on ${controlPort}\n`)
  })
})
