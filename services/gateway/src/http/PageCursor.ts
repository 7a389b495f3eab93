/**
 * Cursors of paged listings: the position after which the next page starts (the last row's creation time and id),
 * as opaque base64url JSON. A cursor that does not decode is the caller's mistake: a 400 that says what to pass.
 */
import { BadRequest } from "@wacluster/domain/ApiErrors"
import { Effect, Either, Encoding, Option, Schema } from "effect"

export const makePageCursor = <Id extends string>(id: Schema.Schema<Id, string>) => {
  const CursorJson = Schema.parseJson(Schema.Struct({ createdAt: Schema.Date, id }))
  const encode = Schema.encodeSync(CursorJson)
  const decode = Schema.decodeUnknownOption(CursorJson)
  return {
    /** The cursor of the page after `last`, when there are more rows than the page holds. */
    next: (rows: ReadonlyArray<{ readonly createdAt: Date; readonly id: Id }>, limit: number) => {
      const last = rows[Math.min(rows.length, limit) - 1]
      return rows.length > limit && last !== undefined
        ? Encoding.encodeBase64Url(encode({ createdAt: last.createdAt, id: last.id }))
        : null
    },
    /** The position a `cursor` query parameter names; none without one. */
    parse: (cursor: string | undefined) => {
      if (cursor === undefined) return Effect.succeed(Option.none<{ readonly createdAt: Date; readonly id: Id }>())
      const position = Either.getRight(Encoding.decodeBase64UrlString(cursor)).pipe(Option.flatMap(decode))
      return Option.isNone(position)
        ? Effect.fail(new BadRequest({ message: "invalid cursor: pass the nextCursor of a previous page" }))
        : Effect.succeed(position)
    }
  }
}
