/**
 * Servers left running on our data directory by a launcher that died without cleaning up (SIGKILL, a closed
 * terminal). They hold Postgres' lock file or share JetStream's store, so a new start cannot work beside them.
 * Our servers run in their own sessions, so once their launcher is gone their parent is init (or a subreaper):
 * those we stop. One whose parent is still a live node process belongs to a running launcher: we refuse instead.
 */
import { Data, Effect, Schedule } from "effect"
import { readdir, readFile } from "node:fs/promises"
import { basename } from "node:path"

export class AlreadyRunning extends Data.TaggedError("AlreadyRunning")<{
  readonly what: string
  readonly dataDir: string
  readonly pid: number
  readonly ownerPid: number
}> {
  override get message() {
    return `a ${this.what} (pid ${this.pid}) started by another running process (pid ${this.ownerPid}) already ` +
      `uses ${this.dataDir}. Stop that one first (kill -INT ${this.ownerPid}), or use another data directory.`
  }
}

interface ProcessInfo {
  readonly pid: number
  readonly ppid: number
  readonly argv: ReadonlyArray<string>
}

const readProcess = async (pid: number): Promise<ProcessInfo | undefined> => {
  try {
    const [cmdline, stat] = await Promise.all([
      readFile(`/proc/${pid}/cmdline`, "utf8"),
      readFile(`/proc/${pid}/stat`, "utf8")
    ])
    // The command name in field 2 may contain spaces and parentheses: the fields we want follow the last ")".
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
    return { pid, ppid, argv: cmdline.split("\0").filter((arg) => arg.length > 0) }
  } catch {
    return undefined
  }
}

const containsInOrder = (argv: ReadonlyArray<string>, args: ReadonlyArray<string>) =>
  argv.some((_, start) => args.every((arg, offset) => argv[start + offset] === arg))

/** Live processes of `binary` whose arguments contain `args` in sequence (e.g. ["-D", dataDir]). */
const findServers = (binary: string, args: ReadonlyArray<string>) =>
  Effect.promise(async () => {
    const entries = await readdir("/proc").catch(() => [] as Array<string>)
    const found: Array<ProcessInfo> = []
    for (const entry of entries) {
      if (!/^\d+$/.test(entry)) continue
      const info = await readProcess(Number(entry))
      if (info && basename(info.argv[0] ?? "") === binary && containsInOrder(info.argv, args)) found.push(info)
    }
    return found
  })

/** false once the process is gone (ESRCH); signal 0 only checks. */
const signal = (pid: number, sig: NodeJS.Signals | 0) => {
  try {
    process.kill(pid, sig)
    return true
  } catch {
    return false
  }
}

/** Stops leftovers of `binary` on `dataDir` (found by `args`); fails if a live launcher still owns one. */
export const clearLeftovers = (options: {
  readonly what: string
  readonly binary: string
  readonly args: ReadonlyArray<string>
  readonly dataDir: string
  readonly signal: NodeJS.Signals
}) =>
  Effect.gen(function*() {
    for (const server of yield* findServers(options.binary, options.args)) {
      const parent = yield* Effect.promise(() => readProcess(server.ppid))
      if (server.ppid > 1 && parent !== undefined && basename(parent.argv[0] ?? "").startsWith("node")) {
        return yield* new AlreadyRunning({
          what: options.what,
          dataDir: options.dataDir,
          pid: server.pid,
          ownerPid: server.ppid
        })
      }
      yield* Effect.logWarning(`stopping a ${options.what} left over from an earlier run (pid ${server.pid})`)
      yield* Effect.sync(() => signal(server.pid, options.signal))
      const gone = yield* Effect.sync(() => !signal(server.pid, 0)).pipe(
        Effect.repeat({ until: (done) => done, schedule: Schedule.spaced("100 millis") }),
        Effect.timeout("10 seconds"),
        Effect.option
      )
      if (gone._tag === "None") yield* Effect.sync(() => signal(server.pid, "SIGKILL"))
    }
  })
