/**
 * A WhatsApp network inside the node process, behind the same port as Baileys. It behaves like the real
 * service where the session actor can tell: QR codes that rotate and finally time out, a scan that links
 * the device and asks for a restart, one live socket per device (a second login closes the first with a
 * conflict), drops, logouts, inbound texts and receipts. `InProcessWhatsApp` is the phone's side of it.
 * Links live in memory: they do not survive the process (the Baileys driver keeps them in Postgres).
 */
import type { SessionId } from "@wacluster/domain/Ids"
import { Context, Duration, Effect, Fiber, Layer, Option, Queue, Stream } from "effect"
import { DriverError, SocketEvent, WhatsAppDriver } from "./WhatsAppDriver.js"
import type { CloseReason, WhatsAppSocket } from "./WhatsAppDriver.js"

export interface InProcessOptions {
  /** Validity of the first QR code (WhatsApp: 60 s). */
  readonly firstQrTimeout: Duration.DurationInput
  /** Validity of each following QR code (WhatsApp: 20 s). */
  readonly qrTimeout: Duration.DurationInput
  /** QR codes shown before the attempt ends as expired. */
  readonly qrAttempts: number
}

export const defaultInProcessOptions: InProcessOptions = {
  firstQrTimeout: Duration.seconds(60),
  qrTimeout: Duration.seconds(20),
  qrAttempts: 6
}

interface LiveSocket {
  readonly id: number
  readonly events: Queue.Queue<SocketEvent>
  qr: string | undefined
  qrLoop: Fiber.RuntimeFiber<void> | undefined
}

interface Device {
  readonly phoneNumber: string
  readonly jid: string
}

export interface SentText {
  readonly waMessageId: string
  readonly to: string
  readonly text: string
}

export class InProcessWhatsApp extends Context.Tag("@wacluster/whatsapp/InProcessWhatsApp")<InProcessWhatsApp, {
  /** The QR code a session shows right now, if it is waiting for a scan. */
  readonly currentQr: (sessionId: SessionId) => Effect.Effect<Option.Option<string>>
  /** The phone scans a QR code: links that session's device. */
  readonly scan: (qr: string, phoneNumber: string) => Effect.Effect<{ readonly jid: string }, DriverError>
  readonly drop: (sessionId: SessionId) => Effect.Effect<void>
  readonly logoutFromPhone: (sessionId: SessionId) => Effect.Effect<void>
  readonly receive: (sessionId: SessionId, from: string, text: string) => Effect.Effect<string, DriverError>
  readonly receipt: (
    sessionId: SessionId,
    waMessageId: string,
    status: "delivered" | "read"
  ) => Effect.Effect<void, DriverError>
  readonly sent: (sessionId: SessionId) => Effect.Effect<ReadonlyArray<SentText>>
  /** Open sockets per session right now (at most one each, by construction). */
  readonly liveSockets: Effect.Effect<number>
}>() {}

const randomToken = (bytes: number) =>
  Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(bytes))).toString("base64")

const makeNetwork = (options: InProcessOptions) =>
  Effect.gen(function*() {
    const devices = new Map<SessionId, Device>()
    const sockets = new Map<SessionId, LiveSocket>()
    const outbox = new Map<SessionId, Array<SentText>>()
    let nextSocketId = 0
    let nextMessageId = 0
    const freshMessageId = () => `3EB0${(nextMessageId++).toString(16).padStart(12, "0").toUpperCase()}`

    const close = (sessionId: SessionId, reason: CloseReason, detail: string) =>
      Effect.suspend(() => {
        const socket = sockets.get(sessionId)
        if (socket === undefined) return Effect.void
        sockets.delete(sessionId)
        return Effect.zipRight(
          socket.qrLoop === undefined ? Effect.void : Fiber.interrupt(socket.qrLoop),
          Queue.offer(socket.events, SocketEvent.Closed({ reason, detail }))
        )
      })

    const qrLoop = (sessionId: SessionId, socket: LiveSocket) =>
      Effect.gen(function*() {
        for (let attempt = 0; attempt < options.qrAttempts; attempt++) {
          const validity = Duration.decode(attempt === 0 ? options.firstQrTimeout : options.qrTimeout)
          const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
          socket.qr = [randomToken(18), randomToken(32), randomToken(32), randomToken(32)].join(",")
          yield* Queue.offer(
            socket.events,
            SocketEvent.Qr({ qr: socket.qr, expiresAt: new Date(now + Duration.toMillis(validity)) })
          )
          yield* Effect.sleep(validity)
        }
        socket.qr = undefined
        socket.qrLoop = undefined
        yield* close(sessionId, "qr_timeout", "no QR code was scanned in time")
      })

    const connect = (sessionId: SessionId) =>
      Effect.gen(function*() {
        // WhatsApp keeps one socket per device: a new login replaces the old one with a conflict.
        yield* close(sessionId, "conflict", "replaced by a newer connection")
        const socket: LiveSocket = {
          id: nextSocketId++,
          events: yield* Queue.unbounded<SocketEvent>(),
          qr: undefined,
          qrLoop: undefined
        }
        sockets.set(sessionId, socket)
        yield* Effect.addFinalizer(() =>
          Effect.suspend(() => {
            if (sockets.get(sessionId)?.id !== socket.id) return Effect.void
            sockets.delete(sessionId)
            return socket.qrLoop === undefined ? Effect.void : Fiber.interrupt(socket.qrLoop)
          })
        )
        const device = devices.get(sessionId)
        if (device !== undefined) {
          yield* Queue.offer(socket.events, SocketEvent.Open({ phoneNumber: device.phoneNumber, jid: device.jid }))
        } else {
          socket.qrLoop = yield* Effect.forkDaemon(qrLoop(sessionId, socket))
        }
        const isMine = Effect.sync(() => sockets.get(sessionId)?.id === socket.id)
        const requireOpen = (operation: string) =>
          Effect.flatMap(isMine, (mine) =>
            mine && devices.has(sessionId)
              ? Effect.void
              : new DriverError({ operation, message: "the socket is not connected" }))

        const live: WhatsAppSocket = {
          events: Stream.fromQueue(socket.events).pipe(Stream.takeUntil((event) => event._tag === "Closed")),
          requestPairingCode: (phoneNumber) =>
            Effect.flatMap(isMine, (mine) =>
              mine && !devices.has(sessionId) && /^\d{6,15}$/.test(phoneNumber)
                ? Effect.succeed(randomToken(6).replace(/[^A-Za-z0-9]/g, "X").slice(0, 8).toUpperCase())
                : new DriverError({ operation: "requestPairingCode", message: "not waiting for a link" })),
          newMessageId: Effect.sync(freshMessageId),
          sendText: (to, text, id) =>
            Effect.zipRight(
              requireOpen("sendText"),
              Effect.sync(() => {
                const waMessageId = id ?? freshMessageId()
                const list = outbox.get(sessionId) ?? []
                // The same id again is the same message (WhatsApp's rule): recorded once.
                if (list.some((sent) => sent.waMessageId === waMessageId)) return { waMessageId }
                list.push({ waMessageId, to, text })
                outbox.set(sessionId, list)
                return { waMessageId }
              })
            ),
          logout: Effect.zipRight(
            requireOpen("logout"),
            Effect.suspend(() => {
              devices.delete(sessionId)
              return close(sessionId, "logged_out", "logged out by this device")
            })
          )
        }
        return live
      })

    const network: Context.Tag.Service<InProcessWhatsApp> = {
      currentQr: (sessionId) => Effect.sync(() => Option.fromNullable(sockets.get(sessionId)?.qr)),
      scan: (qr, phoneNumber) =>
        Effect.suspend(() => {
          for (const [sessionId, socket] of sockets) {
            if (socket.qr !== qr) continue
            const jid = `${phoneNumber}@s.whatsapp.net`
            devices.set(sessionId, { phoneNumber, jid })
            socket.qr = undefined
            // As on WhatsApp: after pairing the server asks the client to reconnect with its new credentials.
            return Effect.as(close(sessionId, "restart_required", "paired; reconnect to log in"), { jid })
          }
          return new DriverError({ operation: "scan", message: "this QR code is not valid (expired or unknown)" })
        }),
      drop: (sessionId) => close(sessionId, "connection_lost", "the connection dropped"),
      logoutFromPhone: (sessionId) =>
        Effect.suspend(() => {
          devices.delete(sessionId)
          return close(sessionId, "logged_out", "the device was unlinked from the phone")
        }),
      receive: (sessionId, from, text) =>
        Effect.gen(function*() {
          const socket = sockets.get(sessionId)
          if (socket === undefined || !devices.has(sessionId)) {
            return yield* new DriverError({ operation: "receive", message: "the session is not connected" })
          }
          const waMessageId = `3A${(nextMessageId++).toString(16).padStart(14, "0").toUpperCase()}`
          const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
          yield* Queue.offer(
            socket.events,
            SocketEvent.MessageReceived({ waMessageId, from, text, timestamp: new Date(now) })
          )
          return waMessageId
        }),
      receipt: (sessionId, waMessageId, status) =>
        Effect.gen(function*() {
          const socket = sockets.get(sessionId)
          if (socket === undefined) {
            return yield* new DriverError({ operation: "receipt", message: "the session is not connected" })
          }
          const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
          yield* Queue.offer(socket.events, SocketEvent.Receipt({ waMessageId, status, at: new Date(now) }))
        }),
      sent: (sessionId) => Effect.sync(() => [...(outbox.get(sessionId) ?? [])]),
      liveSockets: Effect.sync(() => sockets.size)
    }

    const driver: Context.Tag.Service<WhatsAppDriver> = {
      name: "in-process",
      connect: ({ sessionId }) => connect(sessionId),
      forget: (sessionId) => Effect.sync(() => void devices.delete(sessionId))
    }
    return { network, driver }
  })

export const layer = (options: InProcessOptions = defaultInProcessOptions) =>
  Layer.effectContext(
    Effect.map(makeNetwork(options), ({ driver, network }) =>
      Context.make(WhatsAppDriver, driver).pipe(Context.add(InProcessWhatsApp, network)))
  )
