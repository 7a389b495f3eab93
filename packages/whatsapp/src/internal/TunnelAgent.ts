/**
 * The proxy agents (`socks-proxy-agent`, `https-proxy-agent`) with their `connect` supervised, so every attempt
 * tells its session whether the tunnel came up, or failed at the proxy (unreachable, credentials refused, CONNECT
 * or SOCKS request refused, too slow). Once the tunnel is up, whatever goes wrong (TLS, the WebSocket handshake,
 * WhatsApp itself) is beyond the proxy and not reported here.
 */
import { Data } from "effect"
import { HttpsProxyAgent } from "https-proxy-agent"
import type * as http from "node:http"
import type * as https from "node:https"
import type * as net from "node:net"
import { Socket } from "node:net"
import { SocksProxyAgent } from "socks-proxy-agent"
import type { ProxyScheme } from "../ProxyConfig.js"

export type ProxyFailureKind =
  /** Refused, reset, unknown host or closed before the handshake finished. */
  | "unreachable"
  /** SOCKS auth failed or CONNECT answered 407: typically a dead sticky session or a wrong password. */
  | "auth_rejected"
  /** The proxy took our credentials but would not open the tunnel (CONNECT 502/503..., SOCKS reply ≠ success). */
  | "tunnel_refused"
  /** No tunnel within PROXY_CONNECT_TIMEOUT. */
  | "timeout"

/** Thrown into the HTTP stack, so `ws` (and Baileys) see this error, and recorded in the session's health. */
export class ProxyConnectError extends Data.TaggedError("ProxyConnectError")<{
  readonly kind: ProxyFailureKind
  /** host:port of the proxy; never the credentials. */
  readonly proxy: string
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message() {
    return `proxy ${this.proxy} ${this.kind.replace("_", " ")}: ${this.detail}`
  }
}

/** Where an agent reports each connect attempt; called from Node callbacks, so it must be cheap and not throw. */
export interface TunnelReport {
  readonly started: () => number
  readonly tunneled: (attempt: number) => void
  readonly failedAtProxy: (attempt: number, error: ProxyConnectError) => void
  /** Failed before the proxy was involved (client-side DNS of the target with socks5/socks4). */
  readonly failedElsewhere: (attempt: number, cause: unknown) => void
}

export interface TunnelOptions {
  readonly scheme: ProxyScheme
  readonly url: string
  readonly timeoutMillis: number
  readonly report: TunnelReport
}

type ConnectOpts = Parameters<SocksProxyAgent["connect"]>[1]

const describe = (cause: unknown): string => {
  const text = cause instanceof Error ? cause.message : String(cause)
  return text.length > 160 ? `${text.slice(0, 157)}...` : text
}

const proxyAddress = (url: string): string => {
  const parsed = new URL(url)
  return parsed.port === "" ? parsed.hostname : `${parsed.hostname}:${parsed.port}`
}

/**
 * Runs one connect attempt under the timeout and reports its outcome once. `classify` returns undefined for
 * failures that did not involve the proxy. A tunnel that completes after the timeout is closed, not leaked.
 */
const supervise = (
  options: TunnelOptions,
  proxy: string,
  open: (signal: AbortSignal) => Promise<net.Socket>,
  classify: (cause: unknown) => ProxyConnectError | undefined
): Promise<net.Socket> => {
  const attempt = options.report.started()
  const controller = new AbortController()
  return new Promise((resolve, reject) => {
    let settled = false
    const timer = setTimeout(() => {
      if (settled) return
      settled = true
      controller.abort()
      const error = new ProxyConnectError({
        kind: "timeout",
        proxy,
        detail: `no tunnel within ${options.timeoutMillis} ms`
      })
      options.report.failedAtProxy(attempt, error)
      reject(error)
    }, options.timeoutMillis)
    open(controller.signal).then(
      (socket) => {
        if (settled) {
          socket.destroy()
          return
        }
        settled = true
        clearTimeout(timer)
        options.report.tunneled(attempt)
        resolve(socket)
      },
      (cause: unknown) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        const error = classify(cause)
        if (error === undefined) options.report.failedElsewhere(attempt, cause)
        else options.report.failedAtProxy(attempt, error)
        reject(error ?? cause)
      }
    )
  })
}

const hasField = (value: unknown, key: string): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && key in value

class SocksTunnelAgent extends SocksProxyAgent {
  private readonly tunnel: TunnelOptions
  private readonly address: string

  constructor(tunnel: TunnelOptions) {
    super(tunnel.url)
    this.tunnel = tunnel
    this.address = proxyAddress(tunnel.url)
    // The socks client gives up (and closes its socket) at the same deadline as `supervise`.
    this.timeout = tunnel.timeoutMillis
  }

  override connect(req: http.ClientRequest, opts: ConnectOpts): Promise<net.Socket> {
    let raw: net.Socket | undefined
    req.once("proxy", (event: unknown) => {
      if (hasField(event, "socket") && event.socket instanceof Socket) raw = event.socket
    })
    return supervise(
      this.tunnel,
      this.address,
      () =>
        super.connect(req, opts).then((socket) => {
          // SocksProxyAgent reuses its timeout as an idle timeout on the tunnel; a quiet WebSocket must survive.
          raw?.setTimeout(0)
          return socket
        }),
      (cause) => classifySocks(cause, this.address, opts.host)
    )
  }
}

const classifySocks = (cause: unknown, proxy: string, target: string | undefined): ProxyConnectError | undefined => {
  // With socks5/socks4 the target is resolved here, before the proxy is contacted.
  if (hasField(cause, "syscall") && cause.syscall === "getaddrinfo" && cause.hostname === target) return undefined
  const detail = describe(cause)
  const kind: ProxyFailureKind = /authentication failed|no accepted authentication/i.test(detail)
    ? "auth_rejected"
    : /rejected/i.test(detail)
    ? "tunnel_refused"
    : /timed out/i.test(detail)
    ? "timeout"
    : "unreachable"
  return new ProxyConnectError({ kind, proxy, detail, cause })
}

class HttpTunnelAgent extends HttpsProxyAgent<string> {
  private readonly tunnel: TunnelOptions
  private readonly address: string

  constructor(tunnel: TunnelOptions) {
    super(tunnel.url)
    this.tunnel = tunnel
    this.address = proxyAddress(tunnel.url)
  }

  override connect(req: http.ClientRequest, opts: ConnectOpts): Promise<net.Socket> {
    let status: { readonly code: number; readonly text: string } | undefined
    req.once("proxyConnect", (response: unknown) => {
      if (hasField(response, "statusCode") && typeof response.statusCode === "number") {
        status = { code: response.statusCode, text: typeof response.statusText === "string" ? response.statusText : "" }
      }
    })
    return supervise(
      this.tunnel,
      this.address,
      (signal) => {
        // HttpsProxyAgent opens its socket synchronously from `connectOpts`; the signal lets the timeout close it.
        this.connectOpts = { ...this.connectOpts, signal }
        return super.connect(req, opts).then((socket) => {
          // On anything but 200 it hands back a dummy socket replaying the answer; we fail the attempt instead.
          if (status !== undefined && status.code !== 200) {
            socket.destroy()
            throw new ProxyConnectError({
              kind: status.code === 407 ? "auth_rejected" : "tunnel_refused",
              proxy: this.address,
              detail: `CONNECT answered ${status.code} ${status.text}`.trim()
            })
          }
          return socket
        })
      },
      (cause) =>
        cause instanceof ProxyConnectError
          ? cause
          : new ProxyConnectError({ kind: "unreachable", proxy: this.address, detail: describe(cause), cause })
    )
  }
}

/** A fresh agent for one WebSocket connect; its outcome goes to `options.report`. */
export const makeTunnelAgent = (options: TunnelOptions): https.Agent =>
  options.scheme === "http" || options.scheme === "https"
    ? new HttpTunnelAgent(options)
    : new SocksTunnelAgent(options)
