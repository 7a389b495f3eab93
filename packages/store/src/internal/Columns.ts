/**
 * Column schemas shared by the repositories.
 */
import { Schema } from "effect"

/**
 * A Postgres `bigint`: node-postgres returns it as a string (a client configured with an int8 parser may
 * return a number); both decode to a safe JS integer.
 */
export const Int8 = Schema.Union(Schema.Number, Schema.NumberFromString).pipe(
  Schema.filter((n) => Number.isSafeInteger(n), { message: () => "bigint column exceeds the safe integer range" })
)

/** A `bytea` column: node-postgres returns a Buffer, which is a Uint8Array. */
export const Bytes = Schema.Uint8ArrayFromSelf
