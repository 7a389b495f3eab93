/**
 * Scopes stop our processes, but a scope never closes when its Node process is SIGKILLed or dies on a signal
 * (a test runner killed at its timeout, a closed terminal). Our children run in their own sessions, so nothing
 * else would stop them. A small watchdog process holds the read end of a pipe from us: the kernel closes it
 * however we die, and on EOF the watchdog stops every process group we registered and still had running.
 */
import { spawn } from "node:child_process"
import { Socket } from "node:net"

// Lines on stdin: "+ <pgid> <stop signal>" registers a group, "- <pgid>" forgets it.
const script = `
const groups = new Map()
let pending = ""
const quietly = (pid, signal) => { try { process.kill(pid, signal) } catch {} }
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => {})
process.stdin.setEncoding("utf8")
process.stdin.on("data", (chunk) => {
  pending += chunk
  for (let end = pending.indexOf("\\n"); end >= 0; end = pending.indexOf("\\n")) {
    const [op, pgid, signal] = pending.slice(0, end).split(" ")
    pending = pending.slice(end + 1)
    if (op === "+") groups.set(Number(pgid), signal)
    else groups.delete(Number(pgid))
  }
})
process.stdin.on("end", () => {
  if (groups.size === 0) process.exit(0)
  for (const [pgid, signal] of groups) quietly(pgid, signal)
  setTimeout(() => {
    for (const pgid of groups.keys()) quietly(-pgid, "SIGKILL")
    process.exit(0)
  }, 5000)
})
`

let stdin: Socket | undefined

const watchdog = (): Socket | undefined => {
  if (stdin !== undefined && !stdin.destroyed) return stdin
  const child = spawn(process.execPath, ["-e", script], { detached: true, stdio: ["pipe", "ignore", "ignore"] })
  // Neither the process nor the pipe may keep this Node process alive.
  child.unref()
  child.on("error", () => {
    stdin = undefined
  })
  if (!(child.stdin instanceof Socket)) return undefined
  child.stdin.on("error", () => {
    stdin = undefined
  })
  child.stdin.unref()
  stdin = child.stdin
  return stdin
}

/** The watchdog will send `signal` to `pgid`'s leader (SIGKILL to the group 5 s later) if we die first. */
export const register = (pgid: number, signal: NodeJS.Signals): void => {
  watchdog()?.write(`+ ${pgid} ${signal}\n`)
}

export const unregister = (pgid: number): void => {
  stdin?.write(`- ${pgid}\n`)
}
