/**
 * The WhatsApp driver on real Baileys: one `makeWASocket` per connect, its auth state in Postgres
 * (`BaileysAuthState`: encrypted, cached, written behind and fenced), its WebSocket through the session's
 * city proxy, and its events mapped onto the port's events and the product's reasons. This module is the only
 * one that touches Baileys' socket.
 */
import type { SessionId } from "@wacluster/domain/Ids"
import { AuthState } from "@wacluster/store/AuthState"
import makeWASocket, {
  type BinaryNode,
  Browsers,
  type ConnectionState,
  DisconnectReason,
  generateMessageIDV2,
  isJidGroup,
  isJidStatusBroadcast,
  jidDecode,
  proto,
  WA_CERT_DETAILS,
  type WAMessage,
  type WAMessageUpdate
} from "@whiskeysockets/baileys"
import { Config, Deferred, Duration, Effect, Exit, Layer, Option, Queue, Redacted, Runtime, Stream } from "effect"
import * as BaileysAuthState from "./BaileysAuthState.js"
import { makeLogger } from "./internal/BaileysLogger.js"
import * as PreKeyThreads from "./internal/PreKeyThreads.js"
import { type CloseReason, DriverError, SocketEvent, WhatsAppDriver, type WhatsAppSocket } from "./WhatsAppDriver.js"

export interface BaileysOptions {
  /** WhatsApp's WebSocket endpoint, or a simulator's. */
  readonly websocketUrl: string
  /** A simulator's root certificate key (hex); WhatsApp's own key is built into Baileys. */
  readonly rootPublicKey: Option.Option<Redacted.Redacted<string>>
  readonly connectTimeout: Duration.Duration
  readonly keepAlive: Duration.Duration
  /** How long each QR code lives; Baileys' own default (60 s, then 20 s) when unset. */
  readonly qrTimeout: Option.Option<Duration.Duration>
  /** How often auth-state changes are written to Postgres. */
  readonly authFlushEvery: Duration.Duration
  /** How long a send may take, up to WhatsApp's server acknowledgement, before it counts as failed. */
  readonly sendAckTimeout: Duration.Duration
  /** Baileys' log level, bridged into the node's logs. */
  readonly logLevel: "error" | "warn" | "info" | "debug" | "trace"
  /** Worker threads making the pre-keys a device uploads when it links (0: on the main thread). */
  readonly preKeyThreads: number
}

export const config: Config.Config<BaileysOptions> = Config.all({
  websocketUrl: Config.string("WA_WEBSOCKET_URL").pipe(
    Config.withDefault("wss://web.whatsapp.com/ws/chat"),
    Config.withDescription("WhatsApp Web's WebSocket endpoint (a wa-sim URL when simulating)")
  ),
  rootPublicKey: Config.redacted("WA_ROOT_PUBLIC_KEY").pipe(
    Config.validate({
      message: "WA_ROOT_PUBLIC_KEY must be 32 bytes as 64 hex characters",
      validation: (key) => /^[0-9a-fA-F]{64}$/.test(Redacted.value(key))
    }),
    Config.option,
    Config.withDescription("Simulators only: the root public key (hex) that signs the server's certificate")
  ),
  connectTimeout: Config.duration("WA_CONNECT_TIMEOUT").pipe(
    Config.withDefault(Duration.seconds(20)),
    Config.withDescription("How long a WebSocket connect and handshake may take")
  ),
  keepAlive: Config.duration("WA_KEEPALIVE").pipe(
    Config.withDefault(Duration.seconds(30)),
    Config.withDescription("Interval of keep-alive pings on each socket")
  ),
  qrTimeout: Config.duration("WA_QR_TIMEOUT").pipe(
    Config.option,
    Config.withDescription("Lifetime of each QR code (default: 60 s for the first, 20 s for the next)")
  ),
  authFlushEvery: Config.duration("AUTH_FLUSH_EVERY").pipe(
    Config.withDefault(Duration.seconds(1)),
    Config.withDescription("How often changed WhatsApp keys are written to Postgres (a link and sessions at once)")
  ),
  sendAckTimeout: Config.duration("WA_SEND_ACK_TIMEOUT").pipe(
    // Inside SESSION_ASK_TIMEOUT (5 s), so the caller hears "failed", not "busy".
    Config.withDefault(Duration.seconds(4)),
    Config.withDescription("How long a send waits for WhatsApp to acknowledge the message before it counts as failed")
  ),
  logLevel: Config.literal("error", "warn", "info", "debug", "trace")("WA_LOG_LEVEL").pipe(
    Config.withDefault("warn" as const),
    Config.withDescription("Baileys' own log level")
  ),
  preKeyThreads: Config.integer("WA_PREKEY_THREADS").pipe(
    Config.withDefault(1),
    Config.validate({ message: "WA_PREKEY_THREADS must be 0 or more", validation: (threads) => threads >= 0 }),
    Config.withDescription(
      "Worker threads making the 812 pre-keys each device uploads when it links (0: on the node's main thread)"
    )
  )
})

/** Baileys' close codes onto the product's reasons (DESIGN.md "Session states"). */
export const closeReasonOf = (statusCode: number | undefined, message: string, proxyFailed: boolean): CloseReason => {
  if (proxyFailed) return "proxy_unreachable"
  switch (statusCode) {
    // Logged out, banned, or the multi-device link is void: the credentials are no longer usable either way.
    case DisconnectReason.loggedOut:
    case DisconnectReason.forbidden:
    case DisconnectReason.multideviceMismatch:
      return "logged_out"
    case DisconnectReason.connectionReplaced:
      return "conflict"
    case DisconnectReason.restartRequired:
      return "restart_required"
    case DisconnectReason.timedOut:
      return message.includes("QR refs attempts ended") ? "qr_timeout" : "connection_lost"
    default:
      return "connection_lost"
  }
}

const statusCodeOf = (error: unknown): number | undefined => {
  if (typeof error !== "object" || error === null || !("output" in error)) return undefined
  const output = error.output
  if (typeof output !== "object" || output === null || !("statusCode" in output)) return undefined
  return typeof output.statusCode === "number" ? output.statusCode : undefined
}

const messageOf = (error: unknown) => error instanceof Error ? error.message : String(error ?? "closed")

/** The text of a plain or extended text message; other kinds are not texts. */
const textOf = (message: WAMessage): string | undefined =>
  message.message?.conversation ?? message.message?.extendedTextMessage?.text ?? undefined

/** Delivered or read, from Baileys' message status (played voice notes count as read). */
const receiptStatusOf = (status: number | null | undefined): "delivered" | "read" | undefined =>
  status == null
    ? undefined
    : status >= proto.WebMessageInfo.Status.READ
    ? "read"
    : status === proto.WebMessageInfo.Status.DELIVERY_ACK
    ? "delivered"
    : undefined

/** A phone-number JID for a contact, preferring it over a LID when WhatsApp gives both. */
const contactOf = (message: WAMessage): string | undefined => {
  const { remoteJid, remoteJidAlt } = message.key
  if (remoteJidAlt?.endsWith("@s.whatsapp.net")) return remoteJidAlt
  return remoteJid ?? undefined
}

/** `+628123…`, `628123…` or a JID, as the JID WhatsApp expects. */
export const toJid = (to: string): string => to.includes("@") ? to : `${to.replace(/[^0-9]/g, "")}@s.whatsapp.net`

export const make = Effect.fn("BaileysDriver.make")(function*(options: BaileysOptions) {
  const store = yield* AuthState
  const runtime = yield* Effect.runtime<never>()
  const preKeys = yield* PreKeyThreads.make({ threads: options.preKeyThreads })
  // Baileys checks the server's certificate chain against this key; a simulator signs with its own.
  if (Option.isSome(options.rootPublicKey)) {
    WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(Redacted.value(options.rootPublicKey.value), "hex")
  }
  const qrMs = Option.map(options.qrTimeout, Duration.toMillis)

  const connect: WhatsAppDriver["Type"]["connect"] = (connectOptions) =>
    Effect.gen(function*() {
      const { sessionId } = connectOptions
      const auth = yield* BaileysAuthState.open(sessionId, connectOptions.fence, {
        flushEvery: options.authFlushEvery
      }).pipe(
        Effect.provideService(AuthState, store),
        Effect.mapError((cause) =>
          new DriverError({ operation: "connect", message: "auth state could not be loaded", cause })
        )
      )
      const agent = connectOptions.proxy === undefined ? undefined : yield* connectOptions.proxy.agent
      const events = yield* Queue.unbounded<SocketEvent>()
      const emit = (event: SocketEvent) => Queue.unsafeOffer(events, event)
      const logger = makeLogger(runtime, options.logLevel, { sessionId })

      const socket = yield* Effect.try({
        try: () =>
          makeWASocket({
            waWebSocketUrl: options.websocketUrl,
            auth: auth.state,
            logger,
            browser: Browsers.ubuntu("Chrome"),
            printQRInTerminal: false,
            markOnlineOnConnect: false,
            syncFullHistory: false,
            shouldSyncHistoryMessage: () => false,
            fireInitQueries: true,
            generatePreKeyPairs: preKeys.generate,
            generateHighQualityLinkPreview: false,
            connectTimeoutMs: Duration.toMillis(options.connectTimeout),
            keepAliveIntervalMs: Duration.toMillis(options.keepAlive),
            ...(Option.isSome(qrMs) ? { qrTimeout: qrMs.value } : {}),
            ...(agent === undefined ? {} : { agent })
          }),
        catch: (cause) => new DriverError({ operation: "connect", message: messageOf(cause), cause })
      })

      const listened = ["creds.update", "connection.update", "messages.upsert", "messages.update"] as const
      let qrShown = 0
      let closed = false
      /**
       * Sends waiting for WhatsApp's server acknowledgement, by message id: a message written to the socket is not
       * yet WhatsApp's (a socket can die with it unsent), an acknowledged one is.
       */
      const awaitingAck = new Map<string, (error: DriverError | undefined) => void>()
      const settleAcks = (message: string) => {
        const error = new DriverError({ operation: "sendText", message })
        for (const settle of awaitingAck.values()) settle(error)
        awaitingAck.clear()
      }
      const onAck = (node: BinaryNode) => {
        const id = node.attrs.id
        const settle = id === undefined ? undefined : awaitingAck.get(id)
        if (id === undefined || settle === undefined) return
        awaitingAck.delete(id)
        settle(
          node.attrs.error === undefined ? undefined : new DriverError({
            operation: "sendText",
            message: `WhatsApp refused the message (error ${node.attrs.error})`,
            refused: true
          })
        )
      }
      socket.ws.on("CB:ack,class:message", onAck)
      socket.ev.on("creds.update", auth.saveCreds)
      socket.ev.on("connection.update", (update: Partial<ConnectionState>) => {
        if (update.qr !== undefined) {
          const lifetime = Option.getOrElse(qrMs, () => qrShown === 0 ? 60_000 : 20_000)
          qrShown++
          emit(SocketEvent.Qr({ qr: update.qr, expiresAt: new Date(Date.now() + lifetime) }))
        }
        if (update.connection === "open") {
          const jid = socket.user?.id ?? ""
          emit(SocketEvent.Open({ jid, phoneNumber: jidDecode(jid)?.user ?? "" }))
        }
        if (update.connection === "close" && !closed) {
          closed = true
          const error = update.lastDisconnect?.error
          const proxyFailed = connectOptions.proxy === undefined
            ? false
            : Runtime.runSync(runtime)(connectOptions.proxy.failedAtProxy)
          const reason = closeReasonOf(statusCodeOf(error), messageOf(error), proxyFailed)
          settleAcks("the connection closed before WhatsApp acknowledged the message")
          emit(SocketEvent.Closed({ reason, detail: messageOf(error) }))
        }
      })
      socket.ev.on("messages.upsert", ({ messages, type }) => {
        for (const message of messages) {
          // Baileys folds a receipt that arrives before it announced our own sent message into that message.
          if (message.key.fromMe) {
            const status = receiptStatusOf(message.status)
            if (status !== undefined && message.key.id != null) {
              emit(SocketEvent.Receipt({ waMessageId: message.key.id, status, at: new Date() }))
            }
            continue
          }
          if (type !== "notify") continue
          const from = contactOf(message)
          const text = textOf(message)
          if (message.key.fromMe || from === undefined || text === undefined) continue
          if (isJidGroup(from) || isJidStatusBroadcast(from)) continue
          const seconds = Number(message.messageTimestamp ?? 0)
          emit(SocketEvent.MessageReceived({
            waMessageId: message.key.id ?? "",
            from,
            text,
            timestamp: seconds > 0 ? new Date(seconds * 1000) : new Date()
          }))
        }
      })
      socket.ev.on("messages.update", (updates: Array<WAMessageUpdate>) => {
        for (const { key, update } of updates) {
          if (!key.fromMe || key.id == null) continue
          const status = receiptStatusOf(update.status)
          if (status !== undefined) emit(SocketEvent.Receipt({ waMessageId: key.id, status, at: new Date() }))
        }
      })

      // A fenced-out auth write means another node owns the session now: close at once, never write again.
      yield* auth.failure.pipe(
        Effect.catchAll((error) =>
          Effect.sync(() => {
            if (closed) return
            closed = true
            emit(SocketEvent.Closed({ reason: "connection_lost", detail: `auth state not saved: ${error._tag}` }))
            socket.end(undefined)
          })
        ),
        Effect.forkScoped
      )

      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          closed = true
          for (const event of listened) socket.ev.removeAllListeners(event)
          socket.ws.off("CB:ack,class:message", onAck)
          settleAcks("the connection closed before WhatsApp acknowledged the message")
          socket.end(undefined)
        })
      )

      const operation = <A>(name: string, run: () => Promise<A>) =>
        Effect.tryPromise({
          try: run,
          catch: (cause) => new DriverError({ operation: name, message: messageOf(cause), cause })
        }).pipe(Effect.withSpan(`BaileysDriver.${name}`, { attributes: { sessionId } }))

      const whatsAppSocket: WhatsAppSocket = {
        events: Stream.fromQueue(events).pipe(Stream.takeUntil((event) => event._tag === "Closed")),
        requestPairingCode: (phoneNumber) =>
          operation("requestPairingCode", () => socket.requestPairingCode(phoneNumber.replace(/[^0-9]/g, ""))),
        newMessageId: Effect.sync(() => generateMessageIDV2(socket.user?.id)),
        sendText: (to, text, waMessageId) => {
          const messageId = waMessageId ?? generateMessageIDV2(socket.user?.id)
          return Effect.gen(function*() {
            const acknowledged = yield* Deferred.make<void, DriverError>()
            // Listening before sending: the acknowledgement can arrive before sendMessage's promise settles.
            awaitingAck.set(
              messageId,
              (error) => Deferred.unsafeDone(acknowledged, error === undefined ? Exit.void : Exit.fail(error))
            )
            // Encrypting moves the contact's signal session forward: the key store has that step in Postgres before
            // Baileys lets the message go (BaileysAuthState's `set`, and our patch of Baileys' relayMessage).
            yield* operation("sendText", () => socket.sendMessage(toJid(to), { text }, { messageId }))
            yield* Deferred.await(acknowledged)
            return { waMessageId: messageId }
          }).pipe(
            // The whole send is bounded: a dead path can also hang the lookups (devices, keys) before the write.
            Effect.timeoutFail({
              duration: options.sendAckTimeout,
              onTimeout: () =>
                new DriverError({
                  operation: "sendText",
                  message: `WhatsApp did not acknowledge the message within ${Duration.format(options.sendAckTimeout)}`
                })
            }),
            Effect.ensuring(Effect.sync(() => awaitingAck.delete(messageId)))
          )
        },
        logout: operation("logout", () => socket.logout())
      }
      return whatsAppSocket
    }).pipe(Effect.annotateLogs({ sessionId: connectOptions.sessionId }))

  const forget = (sessionId: SessionId) =>
    BaileysAuthState.forget(sessionId).pipe(
      Effect.provideService(AuthState, store),
      Effect.mapError((cause) => new DriverError({ operation: "forget", message: "auth state not wiped", cause }))
    )

  return WhatsAppDriver.of({ name: "baileys", connect, forget })
})

export const layer = (options: BaileysOptions) => Layer.scoped(WhatsAppDriver, make(options))

export const layerConfig = Layer.unwrapEffect(Effect.map(config, layer))
