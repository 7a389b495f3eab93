/**
 * Paged listings: how many rows a page may hold.
 */
import { Schema } from "effect"

export const PageLimit = Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 500))
