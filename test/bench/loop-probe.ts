/**
 * Diagnostics for the density benchmark, preloaded into a service with
 * `NODE_OPTIONS="--import tsx --import <this file>"`: every 5 s, when the process's event loop stalled for 500 ms
 * or more, one stderr line with the longest stall, the p99 delay, the CPU time used and the longest
 * garbage-collection pause of those 5 s (to tell a busy loop from a collector pause). With `--expose-gc` also in
 * NODE_OPTIONS, SIGUSR2 runs a full collection, so the benchmark can read the memory that is live, not garbage.
 */
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector"
import { join } from "node:path"
import { monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks"

const label = process.env.NODE_ID ?? "service"
const delay = monitorEventLoopDelay({ resolution: 20 })
delay.enable()
let longestGc = 0
let gcTotal = 0
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    longestGc = Math.max(longestGc, entry.duration)
    gcTotal += entry.duration
  }
}).observe({ entryTypes: ["gc"] })
process.on("SIGUSR2", () => {
  if (typeof globalThis.gc === "function") globalThis.gc()
  else process.stderr.write(`loop-probe ${label}: SIGUSR2, but gc is not exposed (--expose-gc)\n`)
})
let cpu = process.cpuUsage()
setInterval(() => {
  const used = process.cpuUsage(cpu)
  cpu = process.cpuUsage()
  const maxMs = delay.max / 1e6
  if (maxMs >= 500) {
    process.stderr.write(
      `loop-probe ${label}: stalled up to ${maxMs.toFixed(0)} ms (p99 ${
        (delay.percentile(99) / 1e6).toFixed(0)
      } ms), ` +
        `cpu ${((used.user + used.system) / 5e6 * 100).toFixed(0)}% of a core, gc ${gcTotal.toFixed(0)} ms ` +
        `(longest ${longestGc.toFixed(0)} ms), heap ${(process.memoryUsage().heapUsed / 1048576).toFixed(0)} MB\n`
    )
  }
  delay.reset()
  longestGc = 0
  gcTotal = 0
}, 5000).unref()

// With LOOP_PROBE_PROFILE_DIR set, SIGWINCH starts a CPU profile and the next SIGWINCH writes it there. With
// LOOP_PROBE_HEAP=on as well, the same phases also sample allocations (garbage included: what a phase allocated,
// not what it kept) into a .heapprofile beside it (read it with heap-summary.ts). With LOOP_PROBE_HEAP_SURVIVORS=on
// too, only what lived through at least one scavenge: what makes the young generation's collections long.
const profileDir = process.env.LOOP_PROBE_PROFILE_DIR
const sampleHeap = process.env.LOOP_PROBE_HEAP === "on"
if (profileDir !== undefined) {
  const session = new Session()
  session.connect()
  let profiling = false
  let count = 0
  process.on("SIGWINCH", () => {
    if (!profiling) {
      profiling = true
      session.post("Profiler.enable", () => session.post("Profiler.start"))
      if (sampleHeap) {
        session.post("HeapProfiler.enable", () =>
          session.post("HeapProfiler.startSampling", {
            samplingInterval: 64 * 1024,
            includeObjectsCollectedByMajorGC: true,
            includeObjectsCollectedByMinorGC: process.env.LOOP_PROBE_HEAP_SURVIVORS !== "on"
          }))
      }
      return
    }
    profiling = false
    const file = join(profileDir, `${label}-${process.pid}-${++count}`)
    session.post("Profiler.stop", (error, result) => {
      if (error !== null) return process.stderr.write(`loop-probe ${label}: profile failed: ${String(error)}\n`)
      writeFileSync(`${file}.cpuprofile`, JSON.stringify(result.profile))
      process.stderr.write(`loop-probe ${label}: profile written to ${file}.cpuprofile\n`)
    })
    if (sampleHeap) {
      session.post("HeapProfiler.stopSampling", (error, result) => {
        if (error !== null) return process.stderr.write(`loop-probe ${label}: heap profile failed: ${String(error)}\n`)
        writeFileSync(`${file}.heapprofile`, JSON.stringify(result.profile))
        process.stderr.write(`loop-probe ${label}: heap profile written to ${file}.heapprofile\n`)
      })
    }
  })
}
