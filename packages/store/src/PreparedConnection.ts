/**
 * A Postgres connection of its own for one statement that a single fiber runs over and over (the outbox's group
 * commit, see Outbox.ts). The statement is prepared once per connection, as a named statement: Postgres parses and
 * plans it once, not on every run. The pool (@effect/sql-pg) sends every statement unnamed, parsed and planned each
 * time, which for the outbox's batch insert was about as much of Postgres's work as the insert itself.
 *
 * The connection opens on first use and again after it breaks: a run that finds it broken fails (the caller answers
 * its texts with the error) and the next run opens a new one. An error of the statement itself (Postgres refused
 * one row) leaves the connection as it was.
 */
import { PgClient } from "@effect/sql-pg"
import { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect, Redacted } from "effect"
import pg from "pg"

/** A statement prepared under its name on every connection that runs it. */
export interface NamedStatement {
  /** Unique among the statements of one connection. */
  readonly name: string
  readonly text: string
}

export interface PreparedConnection {
  /** The statement's rows (column names as the statement gives them); one run at a time. */
  readonly run: (
    statement: NamedStatement,
    values: ReadonlyArray<unknown>
  ) => Effect.Effect<ReadonlyArray<Record<string, unknown>>, SqlError>
}

/** Opens lazily, with the pool's URL, application name and connect timeout; closed with the scope. */
export const make = Effect.gen(function*() {
  const { config } = yield* PgClient.PgClient
  let current: pg.Client | undefined

  const drop = (client: pg.Client) => {
    if (current === client) current = undefined
    client.end().catch(() => undefined)
  }

  const open = Effect.suspend(() => {
    const client = new pg.Client({
      connectionString: config.url === undefined ? undefined : Redacted.value(config.url),
      host: config.host,
      port: config.port,
      database: config.database,
      user: config.username,
      password: config.password === undefined ? undefined : Redacted.value(config.password),
      application_name: config.applicationName,
      connectionTimeoutMillis: config.connectTimeout === undefined
        ? undefined
        : Duration.toMillis(Duration.decode(config.connectTimeout))
    })
    // A connection that breaks while idle says so here; the next run opens another.
    client.on("error", () => drop(client))
    client.on("end", () => drop(client))
    return Effect.tryPromise({
      try: () => client.connect(),
      catch: (cause) => {
        client.end().catch(() => undefined)
        return new SqlError({ cause, message: "Failed to open a connection" })
      }
    }).pipe(Effect.map(() => {
      current = client
      return client
    }))
  })

  yield* Effect.addFinalizer(() =>
    Effect.promise(() => {
      const client = current
      current = undefined
      return client === undefined ? Promise.resolve() : client.end().catch(() => undefined)
    })
  )

  const run = (statement: NamedStatement, values: ReadonlyArray<unknown>) =>
    Effect.flatMap(
      Effect.suspend(() => current === undefined ? open : Effect.succeed(current)),
      (client) =>
        Effect.async<ReadonlyArray<Record<string, unknown>>, SqlError>((resume) => {
          client.query<Record<string, unknown>>(
            { name: statement.name, text: statement.text, values: [...values] },
            (cause, result) => {
              if (cause) {
                // Postgres answered with an error: the connection is fine. Anything else (the socket closed, a
                // protocol error) leaves it unusable.
                if (!(cause instanceof pg.DatabaseError)) drop(client)
                resume(Effect.fail(new SqlError({ cause, message: "Failed to execute statement" })))
              } else {
                resume(Effect.succeed(result.rows))
              }
            }
          )
        })
    )

  return { run } satisfies PreparedConnection
})
