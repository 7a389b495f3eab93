/**
 * The child side of `ClientProcess`: one Baileys client in a process of its own, so that a test can freeze it with
 * SIGSTOP as the cluster's chaos test freezes a node. It reads `{ url, rootPublicKey, creds }` (Baileys' BufferJSON)
 * on stdin, logs the device in and reports on stdout, a line each: `open`; `sent` for every stanza it writes in answer
 * to a ping from the server; `closed <status>` before it exits.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { type AuthenticationCreds, BufferJSON, S_WHATSAPP_NET } from "@whiskeysockets/baileys"
import { Effect } from "effect"
import { text } from "node:stream/consumers"
import { memoryKeyStore } from "../src/internal/memoryKeys.js"
import { connect, trustSim, waitForClose, waitForOpen } from "./BaileysClient.js"

export interface ClientProcessInput {
  readonly url: string
  readonly rootPublicKey: string
  readonly creds: AuthenticationCreds
}

const say = (line: string) => process.stdout.write(`${line}\n`)

const program = Effect.gen(function*() {
  const input: ClientProcessInput = JSON.parse(yield* Effect.promise(() => text(process.stdin)), BufferJSON.reviver)
  trustSim(input.rootPublicKey)
  const client = yield* connect(input.url, { creds: input.creds, keys: memoryKeyStore() })
  const { socket } = client
  // A process that wakes up has writes of its own waiting, a keep-alive or a queued message. Writing a stanza as soon
  // as the server's ping is read makes sure a replaced client that resumes sends its old socket more than a pong.
  socket.ws.on("ping", () => {
    if (!socket.ws.isOpen) return
    const ping = { tag: "ping", attrs: {} }
    socket.sendNode({
      tag: "iq",
      attrs: { id: socket.generateMessageTag(), to: S_WHATSAPP_NET, type: "get", xmlns: "w:p" },
      content: [ping]
    }).catch(() => undefined)
    // sendNode hands the frame to the open socket before it returns, so this line comes before `closed`.
    say("sent")
  })
  yield* waitForOpen(client)
  say("open")
  const status = yield* waitForClose(client, "1 hour")
  say(`closed ${status}`)
}).pipe(
  Effect.scoped,
  // Baileys leaves timers running for half a minute after its socket ended; a client that is done exits now.
  Effect.zipRight(Effect.sync(() => process.exit(0)))
)

// stdout carries the report lines; libsignal prints session notices with console.info/log.
console.log = console.error
console.info = console.error

NodeRuntime.runMain(program)
