import { Effect, ExecutionStrategy, Scope } from "effect"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"

/** A directory under os.tmpdir() for the life of the scope (0755: the postgres user must traverse it as root). */
export const tempDir = Effect.acquireRelease(
  Effect.promise(async () => {
    const dir = await mkdtemp(join(tmpdir(), "wacluster-infra-"))
    await chmod(dir, 0o755)
    return dir
  }),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Pids of processes whose command line mentions `text` (e.g. a data directory). */
export const pidsMentioning = (text: string) =>
  Effect.promise(async () => {
    const { readdir, readFile } = await import("node:fs/promises")
    const found: Array<number> = []
    for (const entry of await readdir("/proc")) {
      if (!/^\d+$/.test(entry)) continue
      const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "")
      if (cmdline.includes(text) && Number(entry) !== process.pid) found.push(Number(entry))
    }
    return found
  })

/** A scope the test can close early; the test's own scope still closes it if an assertion fails first. */
export const childScope = Effect.flatMap(Effect.scope, (parent) => Scope.fork(parent, ExecutionStrategy.sequential))

/** Pids of the live children of `parent` (from /proc/<pid>/stat, whose 4th field is the parent pid). */
export const childrenOf = (parent: number) =>
  Effect.promise(async () => {
    const { readdir, readFile } = await import("node:fs/promises")
    const found: Array<number> = []
    for (const entry of await readdir("/proc")) {
      if (!/^\d+$/.test(entry)) continue
      const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "")
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
      if (ppid === parent) found.push(Number(entry))
    }
    return found
  })
