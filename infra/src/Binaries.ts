/**
 * Locating the external programs we run. The directories searched are always a parameter, so a caller (or a test)
 * can decide exactly where to look; the defaults cover PATH plus where Debian installs them outside PATH.
 */
import { Array as Arr, Data, Effect, Option, Order } from "effect"
import { constants } from "node:fs"
import { access, readdir, realpath } from "node:fs/promises"
import { delimiter, dirname, join } from "node:path"

export class BinaryNotFound extends Data.TaggedError("BinaryNotFound")<{
  readonly binary: string
  readonly debianPackage: string
  readonly searched: ReadonlyArray<string>
}> {
  override get message() {
    return `${this.binary} was not found (searched: ${this.searched.join(", ") || "nothing"}). ` +
      `It comes with the Debian package "${this.debianPackage}": run infra/setup.sh (the README setup step) ` +
      `to install it, or apt-get install ${this.debianPackage}.`
  }
}

/** The directories on PATH, in order. */
export const pathDirs = (path: string | undefined = process.env.PATH): ReadonlyArray<string> =>
  (path ?? "").split(delimiter).filter((dir) => dir.length > 0)

/** Debian keeps sbin out of a non-root PATH, and that is where nats-server lives. */
export const natsSearchDirs = (): ReadonlyArray<string> =>
  Arr.dedupe([...pathDirs(), "/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"])

const versionOrder = Order.reverse(Order.number)

/** `/usr/lib/postgresql/<major>/bin`, highest major first (Debian installs the server binaries only there). */
export const debianPostgresDirs = (root = "/usr/lib/postgresql"): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(() => readdir(root).catch(() => [] as Array<string>)).pipe(
    Effect.map((entries) =>
      Arr.filterMap(entries, (entry) => {
        const major = Number.parseFloat(entry)
        return Number.isFinite(major) ? Option.some({ major, dir: join(root, entry, "bin") }) : Option.none()
      })
    ),
    Effect.map((found) =>
      Arr.sort(found, Order.mapInput(versionOrder, (f: { major: number }) => f.major)).map((f) => f.dir)
    )
  )

export const postgresSearchDirs: Effect.Effect<ReadonlyArray<string>> = Effect.map(
  debianPostgresDirs(),
  (debianDirs) => Arr.dedupe([...pathDirs(), ...debianDirs])
)

/** Client tools (psql): the versioned directory first, skipping Debian's perl wrapper in /usr/bin. */
export const postgresClientDirs: Effect.Effect<ReadonlyArray<string>> = Effect.map(
  debianPostgresDirs(),
  (debianDirs) => Arr.dedupe([...debianDirs, ...pathDirs()])
)

const isExecutable = (file: string) => Effect.promise(() => access(file, constants.X_OK).then(() => true, () => false))

/** The first executable `name` in `dirs`, with symlinks resolved (so sibling binaries can be found next to it). */
export const findBinary = Effect.fn("Binaries.findBinary")(function*(options: {
  readonly name: string
  readonly debianPackage: string
  readonly dirs: ReadonlyArray<string>
}) {
  for (const dir of options.dirs) {
    const candidate = join(dir, options.name)
    if (yield* isExecutable(candidate)) {
      return yield* Effect.promise(() => realpath(candidate).catch(() => candidate))
    }
  }
  return yield* new BinaryNotFound({
    binary: options.name,
    debianPackage: options.debianPackage,
    searched: options.dirs
  })
})

/** The directory of a binary found by `findBinary`; its siblings (postgres next to initdb) are looked up there. */
export const binDir = (binary: string): string => dirname(binary)
