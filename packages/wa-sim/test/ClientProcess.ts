/**
 * A Baileys client in a child process (`clientProcessMain.ts`) that a test can freeze with SIGSTOP and thaw with
 * SIGCONT, as the cluster's chaos test does to a node, without freezing the test runner and the sim with it. The
 * scope kills it.
 */
import { BufferJSON } from "@whiskeysockets/baileys"
import { Effect, Queue, type Scope } from "effect"
import { spawn } from "node:child_process"
import { dirname } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { type Auth, waitFor } from "./BaileysClient.js"
import type { ClientProcessInput } from "./clientProcessMain.js"

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)))

export interface ClientProcess {
  /** Waits for the child to report `line` (`open`, `sent`, `closed <status>`), skipping the lines before it. */
  readonly waitForLine: (line: string) => Effect.Effect<void, Error>
  /** SIGSTOP: the process stops at once; the kernel keeps its TCP connections open. */
  readonly freeze: Effect.Effect<void>
  /** SIGCONT */
  readonly thaw: Effect.Effect<void>
  /** SIGKILL, then waits for the exit: the kernel ends its TCP connections. */
  readonly kill: Effect.Effect<void>
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Effect.Effect<number | null>
}

export const start = (
  sim: { readonly url: string; readonly rootPublicKey: string },
  auth: Auth
): Effect.Effect<ClientProcess, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const lines = yield* Queue.unbounded<string>()
      const child = spawn(process.execPath, ["--import", "tsx", "test/clientProcessMain.ts"], {
        cwd: packageDir,
        stdio: ["pipe", "pipe", "pipe"]
      })
      let stderr = ""
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => stderr = (stderr + chunk).slice(-4_000))
      createInterface({ input: child.stdout }).on("line", (line) => Queue.unsafeOffer(lines, line))
      const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      const input: ClientProcessInput = { url: sim.url, rootPublicKey: sim.rootPublicKey, creds: auth.creds }
      child.stdin.end(JSON.stringify(input, BufferJSON.replacer))
      const signal = (name: NodeJS.Signals) => Effect.sync(() => child.kill(name)).pipe(Effect.asVoid)
      const exited = Effect.promise(() => exit)
      const handle: ClientProcess = {
        // The child starts through tsx, which takes seconds on a busy machine.
        waitForLine: (line) =>
          waitFor(lines, `the client process to say ${line}`, (said) => said === line, "60 seconds").pipe(
            Effect.asVoid,
            Effect.mapError((timeout) => new Error(`${timeout.waitingFor}; its stderr ends with:\n${stderr}`))
          ),
        freeze: signal("SIGSTOP"),
        thaw: signal("SIGCONT"),
        kill: Effect.zipRight(signal("SIGKILL"), exited).pipe(Effect.asVoid),
        exited
      }
      return { child, exit, handle }
    }),
    ({ child, exit }) =>
      Effect.promise(async () => {
        // SIGKILL ends a stopped process too.
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
        await exit
      })
  ).pipe(Effect.map(({ handle }) => handle))
