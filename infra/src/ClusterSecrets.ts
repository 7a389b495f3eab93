/**
 * Secrets that must survive a restart of a local cluster, kept in `<dataDir>/secrets.json` (mode 0600):
 * the auth-state key (sessions' WhatsApp credentials in Postgres are encrypted with it — a new key would orphan
 * them), the admin token, and the default tenant's token the launcher created.
 */
import { Data, Effect, Schema } from "effect"
import { randomBytes } from "node:crypto"
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises"
import { join } from "node:path"

export class ClusterSecrets extends Schema.Class<ClusterSecrets>("ClusterSecrets")({
  adminToken: Schema.String,
  /** 32 bytes as 64 hex characters (AES-256-GCM key for auth state). */
  authStateKey: Schema.String.pipe(Schema.pattern(/^[0-9a-f]{64}$/)),
  tenantToken: Schema.optional(Schema.String),
  /** Which database the tenant token belongs to ("local" for the private Postgres, else its URL). */
  tenantDatabase: Schema.optional(Schema.String)
}) {}

export class SecretsFileError extends Data.TaggedError("SecretsFileError")<{
  readonly path: string
  readonly cause: unknown
}> {
  override get message() {
    const detail = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `cannot use ${this.path}: ${detail}. Fix or delete it (deleting it orphans existing sessions' credentials).`
  }
}

export const secretsPath = (dataDir: string): string => join(dataDir, "secrets.json")

const decode = Schema.decodeUnknown(Schema.parseJson(ClusterSecrets))
const encode = Schema.encode(Schema.parseJson(ClusterSecrets, { space: 2 }))

export const generateAuthStateKey = (): string => randomBytes(32).toString("hex")
export const generateToken = (): string => randomBytes(32).toString("hex")

/** The stored secrets, or `undefined` when the file does not exist yet. */
export const read = Effect.fn("ClusterSecrets.read")(function*(dataDir: string) {
  const path = secretsPath(dataDir)
  const text = yield* Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (cause) => new SecretsFileError({ path, cause })
  }).pipe(
    Effect.map((content): string | undefined => content),
    Effect.catchIf(
      (error) => error.cause instanceof Error && "code" in error.cause && error.cause.code === "ENOENT",
      () => Effect.succeed(undefined)
    )
  )
  if (text === undefined) return undefined
  return yield* decode(text).pipe(Effect.mapError((cause) => new SecretsFileError({ path, cause })))
})

/** Writes atomically (temp file + rename) so a crash never leaves half a key behind. */
export const write = Effect.fn("ClusterSecrets.write")(function*(dataDir: string, secrets: ClusterSecrets) {
  const path = secretsPath(dataDir)
  const text = yield* encode(secrets).pipe(Effect.mapError((cause) => new SecretsFileError({ path, cause })))
  yield* Effect.tryPromise({
    try: async () => {
      await mkdir(dataDir, { recursive: true })
      const temp = `${path}.${process.pid}.tmp`
      await writeFile(temp, `${text}\n`, { mode: 0o600 })
      await chmod(temp, 0o600)
      await rename(temp, path)
    },
    catch: (cause) => new SecretsFileError({ path, cause })
  })
})

/**
 * The secrets of the cluster in `dataDir`: stored ones are reused, missing ones generated and saved. An explicit
 * admin token wins over the stored one (and is stored).
 */
export const loadOrCreate = Effect.fn("ClusterSecrets.loadOrCreate")(function*(
  dataDir: string,
  overrides?: { readonly adminToken?: string | undefined }
) {
  const stored = yield* read(dataDir)
  const secrets = new ClusterSecrets({
    ...stored,
    adminToken: overrides?.adminToken ?? stored?.adminToken ?? generateToken(),
    authStateKey: stored?.authStateKey ?? generateAuthStateKey()
  })
  if (stored === undefined || stored.adminToken !== secrets.adminToken) yield* write(dataDir, secrets)
  return secrets
})

/** Reads, changes and writes back (used to remember the default tenant's token). */
export const update = Effect.fn("ClusterSecrets.update")(function*(
  dataDir: string,
  change: (secrets: ClusterSecrets) => ClusterSecrets
) {
  const current = yield* loadOrCreate(dataDir)
  const next = change(current)
  yield* write(dataDir, next)
  return next
})
