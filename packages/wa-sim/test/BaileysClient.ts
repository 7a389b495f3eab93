/**
 * Real, unmodified Baileys clients for the wa-sim tests: an in-memory auth state, one socket per `connect`, and the
 * socket's events as queues the tests wait on.
 */
import makeWASocket, {
  type AuthenticationState,
  type ConnectionState,
  initAuthCreds,
  WA_CERT_DETAILS,
  type WAMessage,
  type WAMessageUpdate
} from "@whiskeysockets/baileys"
import { Data, type Duration, Effect, Queue, type Scope } from "effect"
import { memoryKeyStore } from "../src/internal/memoryKeys.js"
import { silentLogger } from "../src/internal/silentLogger.js"

export class ClientTimeout extends Data.TaggedError("ClientTimeout")<{ readonly waitingFor: string }> {}

export type Auth = AuthenticationState

export const makeAuth = (): Auth => ({ creds: initAuthCreds(), keys: memoryKeyStore() })

/** Points Baileys at the sim's root certificate instead of WhatsApp's (a process-wide setting of Baileys). */
export const trustSim = (rootPublicKey: string): void => {
  WA_CERT_DETAILS.PUBLIC_KEY.set(Buffer.from(rootPublicKey, "hex"))
}

export interface Client {
  readonly socket: ReturnType<typeof makeWASocket>
  readonly auth: Auth
  readonly updates: Queue.Queue<Partial<ConnectionState>>
  readonly messages: Queue.Queue<WAMessage>
  readonly messageUpdates: Queue.Queue<WAMessageUpdate>
}

/** The status code Baileys closed with (a Boom's `output.statusCode`), if any. */
export const statusCodeOf = (update: Partial<ConnectionState>): number | undefined => {
  const error: unknown = update.lastDisconnect?.error
  if (typeof error !== "object" || error === null || !("output" in error)) return undefined
  const output: unknown = error.output
  if (typeof output !== "object" || output === null || !("statusCode" in output)) return undefined
  return typeof output.statusCode === "number" ? output.statusCode : undefined
}

/** Opens one Baileys socket to the sim; the scope ends it. */
export const connect = (url: string, auth: Auth): Effect.Effect<Client, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const updates = yield* Queue.unbounded<Partial<ConnectionState>>()
      const messages = yield* Queue.unbounded<WAMessage>()
      const messageUpdates = yield* Queue.unbounded<WAMessageUpdate>()
      const socket = makeWASocket({
        waWebSocketUrl: url,
        auth,
        logger: silentLogger,
        printQRInTerminal: false,
        markOnlineOnConnect: false,
        syncFullHistory: false,
        shouldSyncHistoryMessage: () => false,
        connectTimeoutMs: 5_000,
        defaultQueryTimeoutMs: 5_000,
        keepAliveIntervalMs: 10_000
      })
      socket.ev.on("creds.update", (update) => Object.assign(auth.creds, update))
      socket.ev.on("connection.update", (update) => Queue.unsafeOffer(updates, update))
      socket.ev.on("messages.upsert", ({ messages: upserted }) => {
        for (const message of upserted) Queue.unsafeOffer(messages, message)
      })
      socket.ev.on("messages.update", (changes) => {
        for (const change of changes) Queue.unsafeOffer(messageUpdates, change)
      })
      return { socket, auth, updates, messages, messageUpdates }
    }),
    ({ socket }) => Effect.promise(() => socket.end(undefined))
  )

/** Takes items off a queue until one matches, within a deadline. */
export const waitFor = <A>(
  queue: Queue.Queue<A>,
  waitingFor: string,
  matches: (item: A) => boolean,
  timeout: Duration.DurationInput = "10 seconds"
): Effect.Effect<A, ClientTimeout> =>
  Queue.take(queue).pipe(
    Effect.repeat({ until: matches }),
    Effect.timeoutFail({ duration: timeout, onTimeout: () => new ClientTimeout({ waitingFor }) })
  )

export const waitForQr = (client: Client) =>
  waitFor(client.updates, "a QR code", (update) => typeof update.qr === "string").pipe(
    Effect.map((update) => update.qr ?? "")
  )

export const waitForOpen = (client: Client) =>
  waitFor(client.updates, "connection open", (update) => update.connection === "open" || update.connection === "close")
    .pipe(
      Effect.flatMap((update) =>
        update.connection === "open"
          ? Effect.void
          : Effect.dieMessage(`closed with ${statusCodeOf(update)} instead of opening`)
      )
    )

/** Resolves with the status code the socket closed with. */
export const waitForClose = (client: Client, timeout: Duration.DurationInput = "10 seconds") =>
  waitFor(client.updates, "connection close", (update) => update.connection === "close", timeout).pipe(
    Effect.map(statusCodeOf)
  )
