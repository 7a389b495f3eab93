/**
 * Where a .cpuprofile (from loop-probe.ts) spent its time: self time per function and per package, top first.
 *
 *   pnpm exec tsx test/bench/profile-summary.ts <file.cpuprofile> [--top 40]
 */
import { readFileSync } from "node:fs"
import { parseArgs } from "node:util"
import { packageOf } from "./profile-frames.js"

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}
interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { top: { type: "string", default: "40" } }
})
const top = Number(values.top)

for (const file of positionals) {
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const self = new Map<number, number>()
  let total = 0
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0
    self.set(id, (self.get(id) ?? 0) + delta)
    total += delta
  })
  const byFunction = new Map<string, number>()
  const byPackage = new Map<string, number>()
  for (const [id, micros] of self) {
    const node = byId.get(id)
    if (node === undefined) continue
    const { functionName, lineNumber, url } = node.callFrame
    const key = `${functionName || "(anonymous)"} ${url.replace(/.*node_modules\//, "")}:${lineNumber + 1}`
    byFunction.set(key, (byFunction.get(key) ?? 0) + micros)
    const pkg = packageOf(url, "(native / idle / gc)")
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + micros)
  }
  const show = (map: Map<string, number>, limit: number) =>
    Array.from(map).sort((a, b) => b[1] - a[1]).slice(0, limit).map(([key, micros]) =>
      `${(micros / 1000).toFixed(0).padStart(8)} ms ${(micros / total * 100).toFixed(1).padStart(5)}%  ${key}`
    ).join("\n")
  process.stdout.write(`${file}: ${(total / 1e6).toFixed(1)} s sampled\n-- by package --\n${show(byPackage, 25)}\n`)
  process.stdout.write(`-- by function (self) --\n${show(byFunction, top)}\n\n`)
}
