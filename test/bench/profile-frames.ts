/** What profile-summary.ts and heap-summary.ts share: which package a profile frame's script belongs to. */

/** node_modules/<pkg> or packages/<name>, services/<name>; "(node)" for Node's own code; `unknown` for no script. */
export const packageOf = (url: string, unknown: string) => {
  if (url === "") return unknown
  const modules = url.match(/node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/)
  if (modules?.[1] !== undefined) return modules[1]
  const ours = url.match(/\/((?:packages|services|infra|test)\/[^/]+)/)
  if (ours?.[1] !== undefined) return ours[1]
  return url.startsWith("node:") ? "(node)" : url
}
