/**
 * Administrative SQL through the `psql` that ships with the server, so infra needs no database driver of its own.
 * Identifiers are validated, never interpolated raw.
 */
import { Effect } from "effect"
import { runCommand } from "./ChildProcess.js"
import { PostgresError } from "./PostgresError.js"

const identifier = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

export const validateName = (name: string): Effect.Effect<string, PostgresError> =>
  identifier.test(name)
    ? Effect.succeed(name)
    : new PostgresError({ reason: `invalid database name ${JSON.stringify(name)} (letters, digits, _; max 63)` })

/** `adminUrl` with its database replaced by `name`. */
export const databaseUrl = (adminUrl: string, name: string): string => {
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}

/** Runs one statement, failing with psql's own message; returns unaligned, tuples-only output. */
export const runSql = (psql: string, url: string, sql: string) =>
  runCommand({
    command: psql,
    args: ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
    env: { ...process.env, PGCONNECT_TIMEOUT: "10" }
  }).pipe(
    Effect.mapError((error) => new PostgresError({ reason: error.message })),
    Effect.flatMap((result) =>
      result.exitCode === 0
        ? Effect.succeed(result.stdout.trim())
        : new PostgresError({ reason: `${sql}: ${result.stderr.trim() || `psql exited with ${result.exitCode}`}` })
    )
  )

export const createDatabase = (psql: string, adminUrl: string, name: string) =>
  Effect.flatMap(
    validateName(name),
    (valid) => runSql(psql, adminUrl, `CREATE DATABASE "${valid}"`).pipe(Effect.as(databaseUrl(adminUrl, valid)))
  )

/** Creates the database unless it exists (a second launcher start reuses it). */
export const ensureDatabase = (psql: string, adminUrl: string, name: string) =>
  Effect.gen(function*() {
    const valid = yield* validateName(name)
    const found = yield* runSql(psql, adminUrl, `SELECT 1 FROM pg_database WHERE datname = '${valid}'`)
    if (found !== "1") yield* runSql(psql, adminUrl, `CREATE DATABASE "${valid}"`)
    return databaseUrl(adminUrl, valid)
  })

/** FORCE disconnects whatever a test left connected, so cleanup never hangs on a stray pool. */
export const dropDatabase = (psql: string, adminUrl: string, name: string) =>
  Effect.flatMap(
    validateName(name),
    (valid) => runSql(psql, adminUrl, `DROP DATABASE IF EXISTS "${valid}" WITH (FORCE)`).pipe(Effect.asVoid)
  )
