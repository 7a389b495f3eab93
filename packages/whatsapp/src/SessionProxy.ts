/**
 * One session's residential proxy (DESIGN.md "Proxy by city"): the URL from the template for the session's city
 * and its current sticky token, a fresh agent per WebSocket connect, and health counters fed by those agents.
 * The driver asks `lastConnect` after a close: a failure at the proxy maps onto `proxy_unreachable`, after which
 * it rotates the sticky token (a new residential exit) and backs off.
 *
 * The agents report from Node callbacks, outside any fiber, so the state is a plain object owned by this module
 * and read through `Effect.sync`; nothing on the connect path allocates more than the agent itself.
 */
import type { City } from "@wacluster/domain/Cities"
import { randomBase62 } from "@wacluster/domain/Ids"
import type { SessionId } from "@wacluster/domain/Ids"
import { Data, Duration, Effect, Option, Schema } from "effect"
import type * as https from "node:https"
import { makeTunnelAgent, type ProxyConnectError, type TunnelReport } from "./internal/TunnelAgent.js"
import { maskedProxyUrl, ProxyConfig, type ProxyConfigShape, type ProxyTarget, proxyUrl } from "./ProxyConfig.js"

export { ProxyConnectError, type ProxyFailureKind } from "./internal/TunnelAgent.js"

/** Length of a sticky token; base62, so 12 characters give ~71 bits and sessions never share an exit by chance. */
export const stickyLength = 12

export const ProxyHealth = Schema.Struct({
  /** False: no template, the session connects directly. */
  enabled: Schema.Boolean,
  /** The proxy URL with the password masked; null when disabled. */
  url: Schema.NullOr(Schema.String),
  sticky: Schema.String,
  /** No failure since the last tunnel (or no attempt yet). */
  healthy: Schema.Boolean,
  /** Failures at the proxy since the last tunnel, across rotations: what the backoff grows with. */
  consecutiveFailures: Schema.NonNegativeInt,
  failures: Schema.NonNegativeInt,
  rotations: Schema.NonNegativeInt,
  lastError: Schema.NullOr(Schema.String),
  lastFailureAt: Schema.NullOr(Schema.Date),
  lastSuccessAt: Schema.NullOr(Schema.Date)
}).annotations({ title: "ProxyHealth" })
export type ProxyHealth = typeof ProxyHealth.Type

/** How the most recent connect attempt through this session's agents went. */
export type ConnectOutcome = Data.TaggedEnum<{
  /** No agent has connected yet (or there is no proxy). */
  NotAttempted: {}
  /** Still reaching the proxy. A socket that closed in this state never got past the proxy. */
  Pending: {}
  Tunneled: {}
  FailedAtProxy: { readonly error: ProxyConnectError }
  /** Failed before the proxy was contacted (client-side DNS of the target with socks5/socks4). */
  FailedElsewhere: { readonly cause: unknown }
}>
export const ConnectOutcome = Data.taggedEnum<ConnectOutcome>()

export interface SessionProxy {
  readonly enabled: boolean
  /** Masked URL for logs and metrics; None without a template. */
  readonly url: Effect.Effect<Option.Option<string>>
  /** The current sticky token, for the caller to persist. */
  readonly sticky: Effect.Effect<string>
  /** A new agent for the next WebSocket connect (`makeWASocket({ agent })`); undefined without a template. */
  readonly agent: Effect.Effect<https.Agent | undefined>
  /** Draws a new sticky token (a new residential exit) and returns it. */
  readonly rotate: Effect.Effect<string>
  readonly health: Effect.Effect<ProxyHealth>
  readonly lastConnect: Effect.Effect<ConnectOutcome>
  /**
   * True when the most recent connect did not get through the proxy: it failed there, or it was still waiting
   * for the proxy when the caller gave up on the socket.
   */
  readonly failedAtProxy: Effect.Effect<boolean>
}

export interface SessionProxyOptions {
  readonly sessionId: SessionId
  readonly city: City
  /** The token persisted from an earlier run; a fresh one is drawn when absent. */
  readonly sticky?: string | undefined
}

const drawSticky = () => randomBase62(stickyLength)

interface State {
  sticky: string
  attempts: number
  outcome: ConnectOutcome
  consecutiveFailures: number
  failures: number
  rotations: number
  lastError: string | null
  lastFailureAt: number | null
  lastSuccessAt: number | null
}

export const make = Effect.fn("SessionProxy.make")(function*(config: ProxyConfigShape, options: SessionProxyOptions) {
  const clock = yield* Effect.clock
  const sticky = options.sticky !== undefined && options.sticky !== "" ? options.sticky : yield* Effect.sync(drawSticky)
  const state: State = {
    sticky,
    attempts: 0,
    outcome: ConnectOutcome.NotAttempted(),
    consecutiveFailures: 0,
    failures: 0,
    rotations: 0,
    lastError: null,
    lastFailureAt: null,
    lastSuccessAt: null
  }
  const target = (): ProxyTarget => ({ sessionId: options.sessionId, city: options.city, sticky: state.sticky })
  const timeoutMillis = Math.max(1, Math.round(Duration.toMillis(config.connectTimeout)))

  // Only the latest attempt decides `outcome`; a late answer to an older one still counts in the totals.
  const report: TunnelReport = {
    started: () => {
      state.attempts += 1
      state.outcome = ConnectOutcome.Pending()
      return state.attempts
    },
    tunneled: (attempt) => {
      state.consecutiveFailures = 0
      state.lastSuccessAt = clock.unsafeCurrentTimeMillis()
      if (attempt === state.attempts) state.outcome = ConnectOutcome.Tunneled()
    },
    failedAtProxy: (attempt, error) => {
      state.consecutiveFailures += 1
      state.failures += 1
      state.lastError = error.message
      state.lastFailureAt = clock.unsafeCurrentTimeMillis()
      if (attempt === state.attempts) state.outcome = ConnectOutcome.FailedAtProxy({ error })
    },
    failedElsewhere: (attempt, cause) => {
      if (attempt === state.attempts) state.outcome = ConnectOutcome.FailedElsewhere({ cause })
    }
  }

  const template = config.template
  const dateOf = (millis: number | null) => (millis === null ? null : new Date(millis))

  const proxy: SessionProxy = {
    enabled: Option.isSome(template),
    url: Effect.sync(() => Option.map(template, (t) => maskedProxyUrl(t, target()))),
    sticky: Effect.sync(() => state.sticky),
    agent: Effect.sync(() =>
      Option.match(template, {
        onNone: () => undefined,
        onSome: (t) =>
          makeTunnelAgent({
            scheme: t.scheme,
            url: proxyUrl(t, config.password, target()),
            timeoutMillis,
            report
          })
      })
    ),
    rotate: Effect.gen(function*() {
      const previous = state.sticky
      state.sticky = drawSticky()
      state.rotations += 1
      yield* Effect.logInfo("proxy sticky token rotated").pipe(
        Effect.annotateLogs({
          sessionId: options.sessionId,
          city: options.city.slug,
          previous,
          sticky: state.sticky,
          lastError: state.lastError ?? ""
        })
      )
      return state.sticky
    }).pipe(Effect.withSpan("SessionProxy.rotate")),
    health: Effect.sync(() => ({
      enabled: Option.isSome(template),
      url: Option.getOrNull(Option.map(template, (t) => maskedProxyUrl(t, target()))),
      sticky: state.sticky,
      healthy: state.consecutiveFailures === 0,
      consecutiveFailures: state.consecutiveFailures,
      failures: state.failures,
      rotations: state.rotations,
      lastError: state.lastError,
      lastFailureAt: dateOf(state.lastFailureAt),
      lastSuccessAt: dateOf(state.lastSuccessAt)
    })),
    lastConnect: Effect.sync(() => state.outcome),
    failedAtProxy: Effect.sync(() => state.outcome._tag === "FailedAtProxy" || state.outcome._tag === "Pending")
  }
  return proxy
})

/** `make` with the node's `ProxyConfig`. */
export const forSession = (options: SessionProxyOptions) =>
  Effect.flatMap(ProxyConfig, (config) => make(config, options))
