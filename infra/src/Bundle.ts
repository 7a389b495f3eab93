/**
 * Our TypeScript services as one JavaScript file each, built with esbuild from the sources as they are now.
 *
 * Started through tsx, a service spent most of its start loading itself: every one of our modules resolved and
 * compiled through tsx's loader thread, each with its source map (a cluster of three nodes and a gateway took 22 s
 * to answer on two cores, 11.6 s bundled). A bundle holds our own code (the workspace's `@wacluster/*` packages
 * included); everything from node_modules stays outside it, imported from where it is installed.
 *
 * A bundle is built the first time this process starts the entry and then reused, so a service always runs the
 * sources of the moment its launcher started. The files go to a directory named after their content under
 * node_modules/.cache/wacluster/bundles: launchers running side by side (test files) never write a file another is
 * loading, and an unchanged build is written once. The lease keeper's worker thread is bundled beside every
 * entry (LeaseKeeper.ts finds it there). Source maps are kept, and the services run with them.
 */
import { Effect } from "effect"
import { build, type Plugin } from "esbuild"
import { createHash, randomUUID } from "node:crypto"
import { mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises"
import { dirname, join, resolve } from "node:path"

export class BundleError extends Error {
  override readonly name = "BundleError"
}

const KEEPER_WORKER = "packages/cluster/src/internal/leaseKeeperWorker.ts"

/** Bundles older than this that no launcher wrote since are removed when a new one is written. */
const KEEP_FOR_MS = 24 * 60 * 60 * 1000

/**
 * Everything but our own packages stays outside the bundle, imported by the absolute path esbuild resolved it to
 * (with the `import` condition): the bundle lives outside any package, where Node could not resolve a bare name.
 */
const installedPackagesOutside: Plugin = {
  name: "installed-packages-outside",
  setup(builder) {
    builder.onResolve({ filter: /^[^./]/ }, async (args) => {
      if (args.path.startsWith("@wacluster/") || args.pluginData === "resolving") return undefined
      if (args.path.startsWith("node:")) return { path: args.path, external: true }
      const resolved = await builder.resolve(args.path, {
        kind: args.kind,
        resolveDir: args.resolveDir,
        pluginData: "resolving"
      })
      if (resolved.errors.length > 0) return { errors: resolved.errors }
      return { path: resolved.path, external: true }
    })
  }
}

const buildOnce = async (repoRoot: string, entry: string): Promise<string> => {
  const result = await build({
    absWorkingDir: repoRoot,
    entryPoints: { main: entry, leaseKeeperWorker: KEEPER_WORKER },
    outdir: "out",
    outExtension: { ".js": ".mjs" },
    bundle: true,
    write: false,
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: "linked",
    logLevel: "silent",
    plugins: [installedPackagesOutside]
  }).catch((cause: unknown) => {
    throw new BundleError(`could not bundle ${entry}: ${cause instanceof Error ? cause.message : String(cause)}`)
  })
  const outDir = resolve(repoRoot, "out")
  const files = result.outputFiles.map((file) => ({
    name: file.path.slice(outDir.length + 1),
    contents: file.contents
  }))
  const hash = createHash("sha256")
  for (const file of files) hash.update(file.name).update(file.contents)
  const root = join(repoRoot, "node_modules", ".cache", "wacluster", "bundles")
  const target = join(root, hash.digest("hex").slice(0, 16))
  const main = join(target, "main.mjs")
  const present = await stat(main).then(() => true, () => false)
  if (!present) {
    // Written whole elsewhere, then moved into place in one step.
    const staging = join(root, `.staging-${randomUUID()}`)
    await mkdir(staging, { recursive: true })
    for (const file of files) {
      await mkdir(dirname(join(staging, file.name)), { recursive: true })
      await writeFile(join(staging, file.name), file.contents)
    }
    await rename(staging, target).catch(async (cause: NodeJS.ErrnoException) => {
      await rm(staging, { recursive: true, force: true })
      // Another launcher moved the same build into place first.
      if (cause.code !== "ENOTEMPTY" && cause.code !== "EEXIST") throw cause
    })
    await pruneOld(root, target)
  }
  return main
}

const pruneOld = async (root: string, keep: string) => {
  const now = Date.now()
  for (const name of await readdir(root).catch(() => [])) {
    const path = join(root, name)
    if (path === keep) continue
    const info = await stat(path).catch(() => undefined)
    if (info !== undefined && now - info.mtimeMs > KEEP_FOR_MS) await rm(path, { recursive: true, force: true })
  }
}

const built = new Map<string, Promise<string>>()

/** The bundle of `entry` (a TypeScript file, relative to `repoRoot`), built once per process. */
export const bundle = (repoRoot: string, entry: string): Effect.Effect<string, BundleError> =>
  Effect.tryPromise({
    try: () => {
      const key = resolve(repoRoot, entry)
      let pending = built.get(key)
      if (pending === undefined) {
        pending = buildOnce(repoRoot, entry)
        built.set(key, pending)
        // A failed build is tried again next time (a syntax error fixed meanwhile).
        pending.catch(() => built.delete(key))
      }
      return pending
    },
    catch: (cause) => cause instanceof BundleError ? cause : new BundleError(String(cause))
  })
