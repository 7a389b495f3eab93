import { describe, expect, it, layer } from "@effect/vitest"
import { findCity } from "@wacluster/domain/Cities"
import { SessionId } from "@wacluster/domain/Ids"
import * as FreePort from "@wacluster/infra/FreePort"
import * as ProxyServer from "@wacluster/test/ProxyServer"
import { Context, type Duration, Effect, Fiber, Layer, Option } from "effect"
import * as http from "node:http"
import { createRequire } from "node:module"
import * as net from "node:net"
import { ProxyConfig } from "../src/ProxyConfig.js"
import * as SessionProxy from "../src/SessionProxy.js"
import { ProxyConnectError } from "../src/SessionProxy.js"

const saoPaulo = Option.getOrThrow(findCity("sao-paulo"))
const sessionId = SessionId.make("sess_sessionProxyTest0000")
/** A password a naive template substitution would break. */
const password = "p@ss:w/rd%"

const templateFor = (server: { readonly kind: string; readonly port: number }) =>
  `${server.kind}://user-country-{country}-city-{city}-session-{sticky}:{password}@127.0.0.1:${server.port}`

const makeProxy = (
  server: { readonly kind: string; readonly port: number },
  options: { readonly sticky?: string; readonly connectTimeout?: Duration.DurationInput } = {}
) =>
  SessionProxy.make(
    ProxyConfig.make({
      template: templateFor(server),
      password,
      connectTimeout: options.connectTimeout ?? "5 seconds"
    }),
    { sessionId, city: saoPaulo, sticky: options.sticky }
  )

const listening = (server: net.Server) =>
  Effect.async<number>((resume) => {
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const address = server.address()
      resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

/** A loopback server closed with the scope; `sockets` are destroyed too, so close does not wait on them. */
const serve = (server: net.Server) => {
  const sockets = new Set<net.Socket>()
  server.on("connection", (socket: net.Socket) => {
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
  })
  return Effect.acquireRelease(listening(server), () =>
    Effect.async<void>((resume) => {
      for (const socket of sockets) socket.destroy()
      server.close(() => resume(Effect.void))
    }))
}

/** The target behind the proxy: answers every request with its path; `/slow...` after most of a second. */
const targetServer = serve(http.createServer((request, response) => {
  const answer = () => response.end(`hello ${request.url}`)
  if (request.url?.startsWith("/slow") === true) setTimeout(answer, 900)
  else answer()
}))

/** A plain GET through `agent`, the way any Node HTTP client would use it. */
const get = (agent: http.Agent | undefined, host: string, port: number, path = "/") =>
  Effect.async<{ readonly status: number; readonly body: string }, Error>((resume) => {
    const request = http.request({ host, port, path, agent: agent ?? false }, (response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => (body += chunk))
      response.on("end", () => resume(Effect.succeed({ status: response.statusCode ?? 0, body })))
      response.on("error", (error) => resume(Effect.fail(error)))
    })
    request.on("error", (error) => resume(Effect.fail(error)))
    request.end()
    return Effect.sync(() => request.destroy())
  })

const proxyFailure = (error: Error): ProxyConnectError => {
  if (error instanceof ProxyConnectError) return error
  throw new Error(`expected a ProxyConnectError, got ${error.name}: ${error.message}`)
}

// ---- ws, as Baileys uses it ----

interface WsClient {
  on(event: "open", listener: () => void): this
  on(event: "message", listener: (data: Buffer) => void): this
  on(event: "error", listener: (error: Error) => void): this
  send(data: string): void
  close(): void
}
interface WsServer {
  on(event: "connection", listener: (socket: WsClient) => void): this
  on(event: "listening", listener: () => void): this
  address(): unknown
  close(callback: () => void): void
}
interface WsModule {
  readonly WebSocket: new(
    url: string,
    options: { readonly agent?: http.Agent; readonly handshakeTimeout: number }
  ) => WsClient
  readonly WebSocketServer: new(options: { readonly host: string; readonly port: number }) => WsServer
}
const isWsModule = (value: unknown): value is WsModule =>
  typeof value === "function" && "WebSocket" in value && "WebSocketServer" in value

/** The very `ws` Baileys opens its socket with (not a dependency of this package, so found through Baileys). */
const loadWs = (): WsModule => {
  const fromHere = createRequire(import.meta.url)
  const ws: unknown = createRequire(fromHere.resolve("@whiskeysockets/baileys/package.json"))("ws")
  if (!isWsModule(ws)) throw new Error("ws as installed for Baileys does not look like ws")
  return ws
}

const echoServer = Effect.acquireRelease(
  Effect.async<{ readonly server: WsServer; readonly port: number }>((resume) => {
    const server = new (loadWs().WebSocketServer)({ host: "127.0.0.1", port: 0 })
    server.on("connection", (socket) => socket.on("message", (data) => socket.send(`echo ${data.toString()}`)))
    server.on("listening", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null && "port" in address ? Number(address.port) : 0
      resume(Effect.succeed({ server, port }))
    })
  }),
  ({ server }) => Effect.async<void>((resume) => server.close(() => resume(Effect.void)))
)

/** Opens a WebSocket through `agent` like Baileys' WebSocketClient, waits `idle`, then round-trips a message. */
const echoThroughWs = (agent: http.Agent | undefined, port: number, idleMillis: number) =>
  Effect.async<string, Error>((resume) => {
    const socket = new (loadWs().WebSocket)(`ws://127.0.0.1:${port}/ws/chat`, {
      handshakeTimeout: 20_000,
      ...(agent === undefined ? {} : { agent })
    })
    socket.on("error", (error) => resume(Effect.fail(error)))
    socket.on("message", (data) => {
      socket.close()
      resume(Effect.succeed(data.toString()))
    })
    socket.on("open", () => setTimeout(() => socket.send("ping"), idleMillis))
    return Effect.sync(() => socket.close())
  })

// ---- tests ----

describe("SessionProxy", () => {
  it.effect("keeps its sticky token until rotate, then draws a different 12-character base62 one", () =>
    Effect.gen(function*() {
      const proxy = yield* makeProxy({ kind: "socks5", port: 7000 })
      const first = yield* proxy.sticky
      expect(first).toMatch(/^[0-9A-Za-z]{12}$/)
      expect(yield* proxy.sticky).toBe(first)
      expect(Option.getOrThrow(yield* proxy.url)).toBe(
        `socks5://user-country-br-city-saopaulo-session-${first}:***@127.0.0.1:7000`
      )
      const second = yield* proxy.rotate
      expect(second).toMatch(/^[0-9A-Za-z]{12}$/)
      expect(second).not.toBe(first)
      expect(yield* proxy.sticky).toBe(second)
      expect(Option.getOrThrow(yield* proxy.url)).toContain(`-session-${second}:***@`)
      const health = yield* proxy.health
      expect(health.rotations).toBe(1)
      expect(health.sticky).toBe(second)
      expect(health.url).not.toContain(password)
      expect(health.healthy).toBe(true)
    }))

  it.effect("resumes with the sticky token it was given", () =>
    Effect.gen(function*() {
      const proxy = yield* makeProxy({ kind: "http", port: 8080 }, { sticky: "Persisted123" })
      expect(yield* proxy.sticky).toBe("Persisted123")
      expect(Option.getOrThrow(yield* proxy.url)).toContain("-session-Persisted123:***@127.0.0.1:8080")
    }))

  it.scopedLive("without a template: no agent, direct connections, health disabled", () =>
    Effect.gen(function*() {
      const proxy = yield* SessionProxy.make(ProxyConfig.make(), { sessionId, city: saoPaulo })
      expect(proxy.enabled).toBe(false)
      const agent = yield* proxy.agent
      expect(agent).toBeUndefined()
      const port = yield* targetServer
      expect((yield* get(agent, "127.0.0.1", port, "/direct")).body).toBe("hello /direct")
      const health = yield* proxy.health
      expect(health).toMatchObject({ enabled: false, url: null, healthy: true, failures: 0 })
      expect(Option.isNone(yield* proxy.url)).toBe(true)
      expect((yield* proxy.lastConnect)._tag).toBe("NotAttempted")
    }))

  it.scopedLive("a proxy that accepts but never answers is a proxy timeout, reported while it is pending", () =>
    Effect.gen(function*() {
      const silentPort = yield* serve(net.createServer(() => {}))
      const target = yield* targetServer
      for (const kind of ["socks5", "http"]) {
        const proxy = yield* makeProxy({ kind, port: silentPort }, { connectTimeout: "400 millis" })
        const started = Date.now()
        const request = yield* Effect.fork(Effect.flip(get(yield* proxy.agent, "127.0.0.1", target)))
        yield* Effect.sleep("100 millis")
        expect((yield* proxy.lastConnect)._tag).toBe("Pending")
        expect(yield* proxy.failedAtProxy).toBe(true)
        const failure = proxyFailure(yield* Fiber.join(request))
        expect(failure.kind).toBe("timeout")
        expect(Date.now() - started).toBeLessThan(3_000)
        const health = yield* proxy.health
        expect(health).toMatchObject({ healthy: false, consecutiveFailures: 1, failures: 1 })
        expect(health.lastError).toContain("no tunnel within 400 ms")
        expect((yield* proxy.lastConnect)._tag).toBe("FailedAtProxy")
      }
    }))
})

class SharedProxy extends Context.Tag("test/SharedProxy")<SharedProxy, ProxyServer.ProxyServerHandle>() {}

for (const kind of ["socks5", "http"] as const) {
  layer(Layer.scoped(SharedProxy, ProxyServer.start({ kind, reject: "session-dead" })), {
    excludeTestServices: true,
    timeout: "60 seconds"
  })(`SessionProxy through a real ${kind} proxy`, (it) => {
    it.scoped("tunnels a request to a loopback server; the proxy sees the city, the sticky token and the password", () =>
      Effect.gen(function*() {
        const server = yield* SharedProxy
        const target = yield* targetServer
        const proxy = yield* makeProxy(server)
        const sticky = yield* proxy.sticky
        const reply = yield* get(yield* proxy.agent, "127.0.0.1", target, "/through")
        expect(reply).toEqual({ status: 200, body: "hello /through" })
        expect(yield* server.seen).toContainEqual({
          username: `user-country-br-city-saopaulo-session-${sticky}`,
          password
        })
        const health = yield* proxy.health
        expect(health).toMatchObject({ enabled: true, healthy: true, consecutiveFailures: 0, failures: 0, sticky })
        expect(health.lastSuccessAt).toBeInstanceOf(Date)
        expect((yield* proxy.lastConnect)._tag).toBe("Tunneled")
        expect(yield* proxy.failedAtProxy).toBe(false)
      }))

    it.scoped("carries a WebSocket opened the way Baileys opens it, which stays up while idle", () =>
      Effect.gen(function*() {
        const server = yield* SharedProxy
        const { port } = yield* echoServer
        const proxy = yield* makeProxy(server, { connectTimeout: "300 millis" })
        const sticky = yield* proxy.sticky
        expect(yield* echoThroughWs(yield* proxy.agent, port, 900)).toBe("echo ping")
        expect((yield* server.seen).map((credential) => credential.username)).toContain(
          `user-country-br-city-saopaulo-session-${sticky}`
        )
        expect((yield* proxy.health).healthy).toBe(true)
      }))

    it.scoped("the connect timeout does not limit the tunnel: an answer slower than it still arrives", () =>
      Effect.gen(function*() {
        const server = yield* SharedProxy
        const target = yield* targetServer
        // socks-proxy-agent reuses its timeout as an idle timeout on the tunnel unless we clear it.
        const proxy = yield* makeProxy(server, { connectTimeout: "300 millis" })
        expect((yield* get(yield* proxy.agent, "127.0.0.1", target, "/slow")).body).toBe("hello /slow")
        expect((yield* proxy.health).healthy).toBe(true)
      }))

    it.scoped("a refused sticky exit is a proxy failure; after rotate the next connect succeeds with the new token", () =>
      Effect.gen(function*() {
        const server = yield* SharedProxy
        const target = yield* targetServer
        const proxy = yield* makeProxy(server, { sticky: "deadExit0001" })
        const failure = proxyFailure(yield* Effect.flip(get(yield* proxy.agent, "127.0.0.1", target)))
        expect(failure.kind).toBe("auth_rejected")
        expect(yield* proxy.failedAtProxy).toBe(true)
        const failed = yield* proxy.health
        expect(failed).toMatchObject({ healthy: false, consecutiveFailures: 1, failures: 1, sticky: "deadExit0001" })
        expect(failed.lastError).toContain(kind === "http" ? "407" : "Authentication failed")
        expect(failed.lastFailureAt).toBeInstanceOf(Date)

        const fresh = yield* proxy.rotate
        expect(fresh).not.toBe("deadExit0001")
        expect((yield* get(yield* proxy.agent, "127.0.0.1", target, "/after-rotate")).body).toBe("hello /after-rotate")
        const usernames = (yield* server.seen).map((credential) => credential.username)
        expect(usernames).toContain("user-country-br-city-saopaulo-session-deadExit0001")
        expect(usernames).toContain(`user-country-br-city-saopaulo-session-${fresh}`)
        expect(yield* proxy.health).toMatchObject({
          healthy: true,
          consecutiveFailures: 0,
          failures: 1,
          rotations: 1,
          sticky: fresh
        })
        expect(yield* proxy.failedAtProxy).toBe(false)
      }))

    it.scoped("a target the exit cannot reach is a proxy failure (CONNECT 502 / SOCKS reply), not a tunnel", () =>
      Effect.gen(function*() {
        const server = yield* SharedProxy
        const closedPort = yield* FreePort.freePort
        const proxy = yield* makeProxy(server)
        const failure = proxyFailure(yield* Effect.flip(get(yield* proxy.agent, "127.0.0.1", closedPort)))
        expect(failure.kind).toBe("tunnel_refused")
        expect(failure.message).toContain(kind === "http" ? "502" : "rejected connection")
        expect((yield* proxy.health).failures).toBe(1)
      }))

    it.scoped("a failure after the tunnel is up is not blamed on the proxy", () =>
      Effect.gen(function*() {
        const server = yield* SharedProxy
        // Accepts, then hangs up on every connection: trouble beyond the proxy, like WhatsApp closing on us.
        const rudePort = yield* serve(net.createServer((socket) => socket.destroy()))
        const proxy = yield* makeProxy(server)
        const error = yield* Effect.flip(get(yield* proxy.agent, "127.0.0.1", rudePort))
        expect(error).not.toBeInstanceOf(ProxyConnectError)
        expect((yield* proxy.lastConnect)._tag).toBe("Tunneled")
        expect(yield* proxy.failedAtProxy).toBe(false)
        expect(yield* proxy.health).toMatchObject({ healthy: true, failures: 0 })
      }))
  })
}

describe("SessionProxy against a proxy that goes away", () => {
  for (const kind of ["socks5", "http"] as const) {
    it.scopedLive(`${kind}: a stopped proxy is a proxy failure in health; once it is back, health recovers`, () =>
      Effect.gen(function*() {
        const server = yield* ProxyServer.start({ kind })
        const target = yield* targetServer
        const proxy = yield* makeProxy(server)
        expect((yield* get(yield* proxy.agent, "127.0.0.1", target, "/before")).body).toBe("hello /before")

        yield* server.stop
        const failure = proxyFailure(yield* Effect.flip(get(yield* proxy.agent, "127.0.0.1", target)))
        expect(failure.kind).toBe("unreachable")
        expect(failure.proxy).toBe(`127.0.0.1:${server.port}`)
        expect(yield* proxy.failedAtProxy).toBe(true)
        const down = yield* proxy.health
        expect(down).toMatchObject({ healthy: false, consecutiveFailures: 1, failures: 1 })
        expect(down.lastError).toContain("ECONNREFUSED")
        expect(down.lastError).not.toContain(password)

        yield* server.start
        expect((yield* get(yield* proxy.agent, "127.0.0.1", target, "/after")).body).toBe("hello /after")
        const up = yield* proxy.health
        expect(up).toMatchObject({ healthy: true, consecutiveFailures: 0, failures: 1 })
        expect(up.lastSuccessAt?.getTime()).toBeGreaterThanOrEqual(up.lastFailureAt?.getTime() ?? Infinity)
        expect((yield* server.seen).length).toBe(2)
      }))
  }

  it.scopedLive("socks5: a target our own resolver cannot find is not blamed on the proxy", () =>
    Effect.gen(function*() {
      const server = yield* ProxyServer.start({ kind: "socks5" })
      const proxy = yield* makeProxy(server)
      const error = yield* Effect.flip(get(yield* proxy.agent, "no-such-host.invalid", 80))
      expect(error).not.toBeInstanceOf(ProxyConnectError)
      expect((yield* proxy.lastConnect)._tag).toBe("FailedElsewhere")
      expect(yield* proxy.failedAtProxy).toBe(false)
      expect((yield* proxy.health).failures).toBe(0)
      expect(yield* server.seen).toEqual([])
    }))
})
