/**
 * What a .heapprofile (allocation sampling from loop-probe.ts, garbage included) allocated: bytes per function
 * (self), per package, and the heaviest allocating stacks, top first.
 *
 *   pnpm exec tsx test/bench/heap-summary.ts <file.heapprofile> [--top 30] [--depth 6] [--skip effect,(node)]
 *
 * `--skip` names packages whose frames are passed over: a stack is shown from the first frame outside them (who
 * made the runtime allocate), and "by caller" sums allocations by that frame.
 */
import { readFileSync } from "node:fs"
import { parseArgs } from "node:util"
import { packageOf } from "./profile-frames.js"

interface HeapNode {
  readonly id: number
  readonly selfSize: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children: ReadonlyArray<HeapNode>
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: "string", default: "30" },
    depth: { type: "string", default: "6" },
    skip: { type: "string", default: "" }
  }
})
const skipped = new Set(values.skip.split(",").filter((name) => name !== ""))
const top = Number(values.top)
const depth = Number(values.depth)

const frameOf = (node: HeapNode) =>
  `${node.callFrame.functionName || "(anonymous)"} ${
    node.callFrame.url.replace(/^.*node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?/, "").replace(
      /^file:\/\/.*\/main\//,
      ""
    )
  }:${node.callFrame.lineNumber + 1}`

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1).padStart(9)} MB`

for (const file of positionals) {
  const profile = JSON.parse(readFileSync(file, "utf8")) as { readonly head: HeapNode }
  const byFunction = new Map<string, number>()
  const byPackage = new Map<string, number>()
  const byStack = new Map<string, number>()
  const byCaller = new Map<string, number>()
  let total = 0
  const walk = (node: HeapNode, stack: ReadonlyArray<HeapNode>) => {
    const here = [node, ...stack]
    if (node.selfSize > 0) {
      total += node.selfSize
      const name = frameOf(node)
      byFunction.set(name, (byFunction.get(name) ?? 0) + node.selfSize)
      const pkg = packageOf(node.callFrame.url, "(native / runtime)")
      byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + node.selfSize)
      const first = here.findIndex((frame) =>
        frame.callFrame.url !== "" && !skipped.has(packageOf(frame.callFrame.url, "(native / runtime)"))
      )
      const shown = skipped.size === 0 || first < 0 ? here : here.slice(first)
      const caller = shown[0] === undefined ? "(none)" : frameOf(shown[0])
      byCaller.set(caller, (byCaller.get(caller) ?? 0) + node.selfSize)
      const key = shown.slice(0, depth).map(frameOf).join("\n      < ")
      byStack.set(key, (byStack.get(key) ?? 0) + node.selfSize)
    }
    for (const child of node.children) walk(child, here)
  }
  walk(profile.head, [])
  const list = (map: Map<string, number>) =>
    [...map].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, bytes]) =>
      `${mb(bytes)} ${(bytes / total * 100).toFixed(1).padStart(5)}%  ${name}`
    ).join("\n")
  console.log(`${file}: ${mb(total).trim()} allocated (sampled)`)
  console.log(`-- by package --\n${list(byPackage)}`)
  console.log(`-- by function (self) --\n${list(byFunction)}`)
  if (skipped.size > 0) console.log(`-- by caller (first frame outside ${values.skip}) --\n${list(byCaller)}`)
  console.log(`-- by stack --\n${list(byStack)}`)
}
