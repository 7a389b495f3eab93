import { Data } from "effect"
import { formatTail } from "./Readiness.js"

/** Anything that goes wrong running our private Postgres or its client tools. */
export class PostgresError extends Data.TaggedError("PostgresError")<{
  readonly reason: string
  readonly logTail?: ReadonlyArray<string> | undefined
}> {
  override get message() {
    return this.logTail === undefined
      ? `postgres: ${this.reason}`
      : `postgres: ${this.reason}\n${formatTail(this.logTail)}`
  }
}
