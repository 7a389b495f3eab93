/**
 * A session's message history, read from Postgres (every message is recorded there by the session's owner as it
 * goes): newest first, cursor pages, filters by direction, contact, status and time.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { MessagePage, MessageStatus, MessageView, WaclusterApi } from "@wacluster/domain/Api"
import { BadRequest, NotFound } from "@wacluster/domain/ApiErrors"
import { MessageId } from "@wacluster/domain/Ids"
import { phoneOfJid } from "@wacluster/domain/Jid"
import { type MessageRecord, Messages } from "@wacluster/store/Messages"
import { DateTime, Effect, Option, Schema } from "effect"
import { authorize, chargeRequest, storeTrouble } from "./Access.js"
import { makePageCursor } from "./PageCursor.js"

const cursors = makePageCursor(MessageId)

const textOf = (body: unknown) =>
  typeof body === "object" && body !== null && "text" in body && typeof body.text === "string" ? body.text : null

const isStatus = Schema.is(MessageStatus)

export const toView = (record: MessageRecord) =>
  new MessageView({
    messageId: record.id,
    direction: record.direction,
    jid: record.remoteJid,
    phoneNumber: phoneOfJid(record.remoteJid),
    text: textOf(record.body),
    // The session's owner writes only these; a status it might write one day reads as failed, not as a broken page.
    status: isStatus(record.status) ? record.status : "failed",
    error: record.error,
    createdAt: DateTime.unsafeFromDate(record.createdAt),
    updatedAt: DateTime.unsafeFromDate(record.updatedAt)
  })

export const MessagesLive = HttpApiBuilder.group(WaclusterApi, "messages", (handlers) =>
  Effect.gen(function*() {
    const messages = yield* Messages
    return handlers
      .handle("list", ({ path, urlParams }) =>
        Effect.gen(function*() {
          yield* authorize(path.sessionId)
          yield* chargeRequest(path.sessionId)
          const limit = urlParams.limit ?? 100
          const before = yield* cursors.parse(urlParams.cursor)
          const since = urlParams.since === undefined ? undefined : DateTime.toDateUtc(urlParams.since)
          const until = urlParams.until === undefined ? undefined : DateTime.toDateUtc(urlParams.until)
          if (since !== undefined && until !== undefined && since >= until) {
            return yield* new BadRequest({
              message: "since must be earlier than until",
              details: { since: since.toISOString(), until: until.toISOString() }
            })
          }
          const rows = yield* messages.list(path.sessionId, {
            limit: limit + 1,
            before: Option.getOrUndefined(before),
            direction: urlParams.direction,
            remoteJid: urlParams.contact,
            status: urlParams.status,
            since,
            until
          }).pipe(Effect.catchAll(storeTrouble("reading the history")))
          return new MessagePage({ messages: rows.slice(0, limit).map(toView), nextCursor: cursors.next(rows, limit) })
        }))
      .handle("get", ({ path }) =>
        Effect.gen(function*() {
          yield* authorize(path.sessionId)
          yield* chargeRequest(path.sessionId)
          const found = yield* messages.find(path.sessionId, path.messageId).pipe(
            Effect.catchAll(storeTrouble("reading the message"))
          )
          if (Option.isNone(found)) {
            return yield* new NotFound({ message: `no message ${path.messageId} in session ${path.sessionId}` })
          }
          return toView(found.value)
        }))
  }))
