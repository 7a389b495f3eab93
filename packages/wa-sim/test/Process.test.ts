import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Schema } from "effect"
import { spawn } from "node:child_process"
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import * as WaSim from "../src/WaSim.js"
import { connect, trustSim, waitFor, waitForOpen } from "./BaileysClient.js"
import { linkDevice, request } from "./Control.js"

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)))
const phoneNumber = "15551230004"

const tempDir = Effect.acquireRelease(
  Effect.promise(() => mkdtemp(join(tmpdir(), "wa-sim-test-"))),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

const ReadyLine = Schema.parseJson(Schema.Struct({
  waSimUrl: Schema.String,
  waSimControlUrl: Schema.String,
  rootPublicKey: Schema.String
}))

/** Runs `src/main.ts` the way `pnpm start` does (tsx), and collects its stdout and exit code. */
const startProcess = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts", ...args], {
        cwd: packageDir,
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => stdout += chunk)
      child.stderr.resume()
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      const firstLine = new Promise<string>((resolve, reject) => {
        const check = () => {
          const end = stdout.indexOf("\n")
          if (end >= 0) resolve(stdout.slice(0, end))
        }
        child.stdout.on("data", check)
        void exited.then((code) => reject(new Error(`wa-sim exited with ${code} before it was ready`)))
      })
      return { child, exited, firstLine, stdout: () => stdout }
    }),
    ({ child, exited }) =>
      Effect.promise(async () => {
        if (child.exitCode === null) child.kill("SIGKILL")
        await exited
      })
  )

describe("WaSim standalone and state", () => {
  it.scopedLive(
    "the process prints one JSON line when ready, serves the control API and exits on SIGTERM",
    () =>
      Effect.gen(function*() {
        const sim = yield* startProcess(["--port", "0", "--control-port", "0"])
        const ready = yield* Schema.decode(ReadyLine)(yield* Effect.promise(() => sim.firstLine))
        expect(ready.waSimUrl).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/ws\/chat$/)
        expect(ready.rootPublicKey).toMatch(/^[0-9a-f]{64}$/)
        expect(yield* request(ready.waSimControlUrl, "GET", "/stats")).toEqual({
          status: 200,
          body: { devices: 0, liveSockets: 0, overlaps: 0 }
        })
        sim.child.kill("SIGTERM")
        expect(yield* Effect.promise(() => sim.exited)).toBe(0)
        expect(sim.stdout().trim().split("\n")).toHaveLength(1)
      }),
    90_000
  )

  it.scopedLive("with a state file, the root key and linked devices survive a restart", () =>
    Effect.gen(function*() {
      const stateFile = join(yield* tempDir, "wa-sim.json")
      const { auth, jid, rootPublicKey } = yield* Effect.scoped(Effect.gen(function*() {
        const sim = yield* WaSim.make({ stateFile })
        trustSim(sim.rootPublicKey)
        const linked = yield* linkDevice(sim, phoneNumber)
        yield* Effect.flatMap(connect(sim.url, linked.auth), waitForOpen)
        return { ...linked, rootPublicKey: sim.rootPublicKey }
      }))
      // The login after the link uploaded the first batch of one-time prekeys.
      const uploadedUpTo = auth.creds.nextPreKeyId
      expect(uploadedUpTo).toBeGreaterThan(800)
      expect(JSON.parse(yield* Effect.promise(() => readFile(stateFile, "utf8")))).toMatchObject({
        devices: [expect.objectContaining({ jid, phoneNumber })]
      })

      const restarted = yield* WaSim.make({ stateFile })
      expect(restarted.rootPublicKey).toBe(rootPublicKey)
      expect(yield* restarted.stats).toEqual({ devices: 1, liveSockets: 0, overlaps: 0 })
      const client = yield* connect(restarted.url, auth)
      yield* waitForOpen(client)
      expect(auth.creds.me?.id).toBe(jid)
      // The sim kept the device's one-time prekeys: no new batch on this login, and a new contact's first message
      // is encrypted to one of the kept ones.
      expect(auth.creds.nextPreKeyId).toBe(uploadedUpTo)
      const { id } = yield* restarted.sendText(jid, "4930123456", "after the restart")
      const received = yield* waitFor(client.messages, "a message after the restart", (m) => m.key.id === id)
      expect(received.message?.conversation).toBe("after the restart")
    }))

  it.scopedLive("refuses to start from a state file that is not one", () =>
    Effect.gen(function*() {
      const stateFile = join(yield* tempDir, "broken.json")
      yield* Effect.promise(() => writeFile(stateFile, "{\"version\": 2}"))
      const exit = yield* Effect.exit(WaSim.make({ stateFile }))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) expect(JSON.stringify(exit.cause)).toContain("state_file_invalid")
    }))
})
