/**
 * A session actor's live state and what it shows of it: the status document (exactly the product's shape), the
 * health panel, the QR code. Pure functions of the state, so the actor's module keeps only behaviour.
 */
import type { SessionId } from "@wacluster/domain/Ids"
import {
  ConnectionHealth,
  messageQueueHealth,
  PairingUnavailable,
  ProxyHealthView,
  QrCode,
  SessionHealthView,
  SessionStatusView,
  StatusMetrics
} from "@wacluster/domain/Protocol"
import { healthOf } from "@wacluster/domain/Session"
import type { SessionReason, SessionStatus } from "@wacluster/domain/Session"
import type { QueueDepth } from "@wacluster/store/Outbox"
import type { ProxyHealth } from "@wacluster/whatsapp/SessionProxy"
import { DateTime } from "effect"

export interface LiveState {
  status: SessionStatus
  reason: SessionReason | null
  connectedAt: Date | null
  phoneNumber: string | null
  lastActivityAt: Date | null
  qr: string | null
  qrExpiresAt: Date | null
  messagesSent: number
  messagesReceived: number
  /** Accumulated over the session's life (persisted), up to `since`. */
  connectedMs: number
  observedMs: number
  /** Monotonic time of the last accounting point. */
  since: number
}

/** Percentage of observed time spent connected, one decimal. */
export const uptimePercent = (state: LiveState, now: number): number => {
  const running = now - state.since
  const observed = state.observedMs + running
  const connected = state.connectedMs + (state.status === "connected" ? running : 0)
  return observed <= 0 ? 0 : Math.round((connected / observed) * 1000) / 10
}

export const statusView = (sessionId: SessionId, state: LiveState, now: number) =>
  new SessionStatusView({
    sessionId,
    status: state.status,
    connectedAt: state.connectedAt === null ? null : DateTime.unsafeFromDate(state.connectedAt),
    health: healthOf(state.status),
    metrics: new StatusMetrics({
      messagesSent: state.messagesSent,
      messagesReceived: state.messagesReceived,
      uptime: uptimePercent(state, now)
    })
  })

const at = (date: Date | null) => date === null ? null : DateTime.unsafeFromDate(date)

export const healthView = (
  sessionId: SessionId,
  state: LiveState,
  queue: QueueDepth,
  proxy: ProxyHealth,
  now: Date
) =>
  new SessionHealthView({
    sessionId,
    connection: new ConnectionHealth({
      status: state.status,
      reason: state.reason,
      indicator: state.status === "connected" ? "green" : "red",
      connectedAt: at(state.connectedAt),
      phoneNumber: state.phoneNumber
    }),
    lastActivityAt: at(state.lastActivityAt),
    messageQueue: messageQueueHealth(queue.pending, queue.oldestAt, now),
    proxy: proxy.enabled && proxy.url !== null
      ? new ProxyHealthView({
        url: proxy.url,
        sticky: proxy.sticky,
        healthy: proxy.healthy,
        consecutiveFailures: proxy.consecutiveFailures,
        failures: proxy.failures,
        rotations: proxy.rotations,
        lastError: proxy.lastError,
        lastFailureAt: at(proxy.lastFailureAt),
        lastSuccessAt: at(proxy.lastSuccessAt)
      })
      : null
  })

export const qrView = (sessionId: SessionId, state: LiveState) =>
  new QrCode({
    sessionId,
    status: state.status,
    reason: state.reason,
    qr: state.qr,
    expiresAt: at(state.qrExpiresAt)
  })

export const pairingUnavailable = (sessionId: SessionId, state: LiveState, message: string) =>
  new PairingUnavailable({ sessionId, status: state.status, reason: state.reason, message })
