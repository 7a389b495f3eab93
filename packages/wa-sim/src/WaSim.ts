/**
 * wa-sim: a WhatsApp Web server on 127.0.0.1 that real, unmodified Baileys connects to (`waWebSocketUrl: sim.url`
 * after pinning `rootPublicKey` as `WA_CERT_DETAILS.PUBLIC_KEY`), plus a control API acting as the phone and the
 * network. Closing the scope closes every socket and both servers.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as HttpServer from "@effect/platform/HttpServer"
import { Curve } from "@whiskeysockets/baileys"
import { Context, Effect, Layer, type Scope } from "effect"
import { createServer } from "node:http"
import { makeServerIdentity } from "./internal/certificates.js"
import { startChatServer } from "./internal/ChatServer.js"
import * as ControlApi from "./internal/ControlApi.js"
import { Messenger, type SentMessage } from "./internal/Messenger.js"
import * as Phone from "./internal/phone.js"
import { type PendingPairing, type PendingQr, Registry, type Stats } from "./internal/Registry.js"
import { makeStanzaHandler } from "./internal/stanzas.js"
import * as StateFile from "./internal/StateFile.js"
import { simError, WaSimError } from "./WaSimError.js"

export type { PendingPairing, PendingQr, SentMessage, Stats }

export interface WaSimOptions {
  /** Port of the WebSocket server; 0 (the default) picks a free one. */
  readonly port?: number
  /** Port of the control API; 0 (the default) picks a free one. */
  readonly controlPort?: number
  /** Linked devices and the root key are kept in this JSON file across restarts. */
  readonly stateFile?: string
  /**
   * How long the QR codes of one registration can be scanned, and how long a pairing code request
   * (`requestPairingCode`) can be answered. Default 160 s: the life of Baileys' whole set of codes at its defaults
   * (60 s for the first, 20 s for each of the five others), after which Baileys closes the connection itself.
   */
  readonly qrTtlMs?: number
  /** How many QR refs a registering client gets (Baileys shows one after the other). Default 6. */
  readonly qrRefs?: number
  /** How long a scan or a typed code waits for each answer of the client. Default 10 s. */
  readonly pairingTimeoutMs?: number
  /**
   * A connection that sends nothing for this long is cut as if its TCP connection were lost (Baileys pings every
   * `keepAliveIntervalMs`, 30 s by default). Default 90 s; 0 never cuts.
   */
  readonly idleTimeoutMs?: number
  /**
   * When a device logs in while its previous socket is still open, that socket is replaced at once and pinged: it
   * counts as an overlap only if it sends any frame within this many ms (a live peer); a frozen or dead one stays
   * silent and counts nothing. Default 1500 ms.
   */
  readonly livenessProbeMs?: number
  /** Where unexpected protocol errors go (a client that sends garbage, a failed state-file write). */
  readonly onError?: (error: unknown) => void
}

export interface DeviceInfo {
  readonly jid: string
  readonly lid: string
  readonly phoneNumber: string
  readonly platform: string
  readonly linkedAt: string
  readonly live: boolean
}

export interface WaSim {
  /** `ws://127.0.0.1:<port>/ws/chat` */
  readonly url: string
  /** `http://127.0.0.1:<controlPort>` */
  readonly controlUrl: string
  /** Hex of the root public key clients must pin as `WA_CERT_DETAILS.PUBLIC_KEY`. */
  readonly rootPublicKey: string
  /**
   * Devices, live sockets and overlaps (invariant 1). Waits for the liveness probes of logins already made (at most
   * `livenessProbeMs`), so `overlaps` is final for everything that happened before the call.
   */
  readonly stats: Effect.Effect<Stats>
  readonly devices: Effect.Effect<ReadonlyArray<DeviceInfo>>
  readonly pendingQrs: Effect.Effect<ReadonlyArray<PendingQr>>
  /** Clients that asked to be linked by a pairing code (`requestPairingCode`) and wait for it to be typed. */
  readonly pendingPairings: Effect.Effect<ReadonlyArray<PendingPairing>>
  /** Scans the QR string a client shows, linking it to the account of `phoneNumber` (digits, E.164 without +). */
  readonly scan: (qr: string, phoneNumber: string) => Effect.Effect<{ readonly jid: string }, WaSimError>
  /**
   * The user types `code` on the phone of `phoneNumber` (case-insensitive, dashes allowed: `abcd-efgh`), for the
   * newest client that asked to be linked to that number. Fails with `pairing_not_found` when none waits and with
   * `wrong_pairing_code` when the code is not the client's (nothing is linked; the client keeps waiting).
   */
  readonly enterCode: (phoneNumber: string, code: string) => Effect.Effect<{ readonly jid: string }, WaSimError>
  /** Unlinks the device: its live socket gets 401, and so does every later login. */
  readonly logout: (jid: string) => Effect.Effect<void, WaSimError>
  /** Its live socket gets 440 (replaced); the device stays linked. Succeeds with whether a socket was live. */
  readonly conflict: (jid: string) => Effect.Effect<boolean, WaSimError>
  /** Destroys its live socket's TCP connection, no stream error. Succeeds with whether a socket was live. */
  readonly drop: (jid: string) => Effect.Effect<boolean, WaSimError>
  /** The device's connection stays open but loses everything the client sends (no answers, no acks). */
  readonly stall: (jid: string) => Effect.Effect<boolean, WaSimError>
  /** A 1:1 text from the phone number `from` to the device (delivered now, or on its next login). */
  readonly sendText: (jid: string, from: string, text: string) => Effect.Effect<{ readonly id: string }, WaSimError>
  /** What the device sent to contacts, oldest first. */
  readonly sentMessages: (jid: string) => Effect.Effect<ReadonlyArray<SentMessage>, WaSimError>
  /** The contact's receipt for a message the device sent. */
  readonly receipt: (jid: string, messageId: string, status: "delivered" | "read") => Effect.Effect<void, WaSimError>
}

export const WaSim = Context.GenericTag<WaSim>("@wacluster/wa-sim/WaSim")

const HOST = "127.0.0.1"

/** Runs a piece of the sim's synchronous or Promise core, turning anything thrown into a WaSimError. */
const attempt = <A>(operation: string, run: () => A | Promise<A>): Effect.Effect<A, WaSimError> =>
  Effect.tryPromise({
    try: async () => run(),
    catch: (error) => error instanceof WaSimError ? error : simError("internal_error", String(error), error)
  }).pipe(Effect.withSpan(`WaSim.${operation}`))

export const make = (options: WaSimOptions = {}): Effect.Effect<WaSim, WaSimError, Scope.Scope> =>
  Effect.gen(function*() {
    const onError = options.onError ?? (() => undefined)
    const snapshot = options.stateFile ? yield* StateFile.load(options.stateFile) : undefined
    const registry = new Registry(
      snapshot?.root ?? Curve.generateKeyPair(),
      { livenessProbeMs: options.livenessProbeMs ?? 1_500 },
      snapshot
    )
    if (options.stateFile) {
      const writer = StateFile.makeWriter(options.stateFile, () => registry.snapshot(), onError)
      registry.onChange(writer.schedule)
      // A fresh root key is written at once, so a client that pinned it can still connect after a restart.
      if (!snapshot) writer.schedule()
      yield* Effect.addFinalizer(() => Effect.sync(writer.flush))
      const preKeys = StateFile.makePreKeyFiles(options.stateFile, onError)
      preKeys.restore(snapshot?.devices ?? [])
      registry.onPreKeysChange(preKeys.schedule)
      registry.onUnlink(preKeys.remove)
      yield* Effect.addFinalizer(() => Effect.sync(preKeys.flush))
    }
    const messenger = new Messenger(registry, onError)
    registry.onUnlink((jid) => messenger.forget(jid))
    const identity = makeServerIdentity(registry.root)
    const chat = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          startChatServer(HOST, options.port ?? 0, options.idleTimeoutMs ?? 90_000, {
            identity,
            registry,
            qrRefs: options.qrRefs ?? 6,
            qrTtlMs: options.qrTtlMs ?? 160_000,
            onStanza: makeStanzaHandler(registry, messenger),
            onError
          }),
        catch: (cause) => simError("startup_failed", `cannot listen on ${HOST}:${options.port ?? 0}`, cause)
      }),
      (server) => Effect.promise(server.close)
    )
    const pairingTimeoutMs = options.pairingTimeoutMs ?? 10_000
    const control = yield* NodeHttpServer.make(() => createServer(), { port: options.controlPort ?? 0, host: HOST })
      .pipe(
        Effect.mapError((cause) =>
          simError("startup_failed", `cannot listen on ${HOST}:${options.controlPort ?? 0}`, cause)
        )
      )

    const sim: WaSim = {
      url: `ws://${HOST}:${chat.port}/ws/chat`,
      controlUrl: controlUrlOf(control.address),
      rootPublicKey: Buffer.from(registry.root.public).toString("hex"),
      stats: Effect.promise(() => registry.settledStats()).pipe(Effect.withSpan("WaSim.stats")),
      devices: Effect.sync(() =>
        registry.listDevices().map((device) => ({
          jid: device.jid,
          lid: device.lid,
          phoneNumber: device.phoneNumber,
          platform: device.platform,
          linkedAt: new Date(device.linkedAt).toISOString(),
          live: device.live
        }))
      ),
      pendingQrs: Effect.sync(() => registry.pendingQrs(Date.now())),
      pendingPairings: Effect.sync(() => registry.pendingPairings(Date.now())),
      scan: (qr, phoneNumber) => attempt("scan", () => Phone.scan(registry, qr, phoneNumber, pairingTimeoutMs)),
      enterCode: (phoneNumber, code) =>
        attempt("enterCode", () => Phone.enterCode(registry, phoneNumber, code, pairingTimeoutMs)),
      logout: (jid) => attempt("logout", () => Phone.logout(registry, jid)),
      conflict: (jid) => attempt("conflict", () => Phone.conflict(registry, jid)),
      drop: (jid) => attempt("drop", () => Phone.drop(registry, jid)),
      stall: (jid) => attempt("stall", () => Phone.stall(registry, jid)),
      sendText: (jid, from, text) => attempt("sendText", () => messenger.sendText(jid, from, text)),
      sentMessages: (jid) => attempt("sentMessages", () => messenger.sentBy(jid)),
      receipt: (jid, messageId, status) => attempt("receipt", () => messenger.receiptFor(jid, messageId, status))
    }
    yield* control.serve(ControlApi.app(sim))
    return sim
  })

const controlUrlOf = (address: HttpServer.Address): string =>
  address._tag === "TcpAddress" ? `http://${HOST}:${address.port}` : `http+unix://${address.path}`

export const layer = (options: WaSimOptions = {}): Layer.Layer<WaSim, WaSimError> => Layer.scoped(WaSim, make(options))
