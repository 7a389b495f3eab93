/**
 * Hand-written JSON for the send's own command (QueueText) and its success: each writes exactly what the Schema codec
 * writes, and reads only what the Schema codec would read the same way. Each answers `undefined` for anything else,
 * which the caller then hands to the Schema codec (ProtocolJson.ts).
 */
import { DateTime, Exit, Option } from "effect"
import { ApiKeyId, idPattern, MessageId, SessionId } from "../Ids.js"
import { AcceptedMessage, Caller, QueueText } from "../Protocol.js"

/** What was just checked field by field (or comes from a constructed command) needs no second check. */
const NO_CHECK = { disableValidation: true } as const
const SESSION_ID = idPattern("sess")
const API_KEY_ID = idPattern("key")
const MESSAGE_ID = idPattern("msg")

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)
const isIntOrNull = (value: unknown) => value === null || Number.isSafeInteger(value)

type QueueTextFields = Omit<typeof QueueText.Encoded, "_tag">

/** A caller as QueueText carries it (absent is fine: internal commands have none). */
const isCallerShape = (caller: unknown) =>
  caller === undefined || (
    isRecord(caller) && (caller.keyId === null || (typeof caller.keyId === "string" && API_KEY_ID.test(caller.keyId)))
    && isIntOrNull(caller.requestsPerMinute) && isIntOrNull(caller.messagesPerHour)
  )

/** QueueText's fields, in a command or in parsed JSON, as its schema would take them. */
const isQueueTextShape = <T extends { readonly [K in keyof QueueTextFields]?: unknown }>(
  value: T
): value is T & QueueTextFields =>
  typeof value.sessionId === "string" && SESSION_ID.test(value.sessionId) && typeof value.to === "string" &&
  typeof value.text === "string" && (value.idempotencyKey === null || typeof value.idempotencyKey === "string") &&
  isCallerShape(value.caller)

const parsed = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

export const writeQueueText = (command: QueueText): string | undefined => {
  if (!isQueueTextShape(command)) return undefined
  const { caller, idempotencyKey, sessionId, text, to } = command
  return JSON.stringify(
    caller === undefined
      ? { _tag: "QueueText", sessionId, to, text, idempotencyKey }
      : {
        _tag: "QueueText",
        sessionId,
        to,
        text,
        idempotencyKey,
        caller: {
          keyId: caller.keyId,
          requestsPerMinute: caller.requestsPerMinute,
          messagesPerHour: caller.messagesPerHour
        }
      }
  )
}

export const readQueueText = (text: string): QueueText | undefined => {
  const json = parsed(text)
  if (!isRecord(json) || json._tag !== "QueueText" || !isQueueTextShape(json)) return undefined
  const { caller } = json
  const fields = {
    sessionId: SessionId.make(json.sessionId, NO_CHECK),
    to: json.to,
    text: json.text,
    idempotencyKey: json.idempotencyKey
  }
  return new QueueText(
    caller === undefined ? fields : {
      ...fields,
      caller: new Caller({
        keyId: caller.keyId === null ? null : ApiKeyId.make(caller.keyId, NO_CHECK),
        requestsPerMinute: caller.requestsPerMinute,
        messagesPerHour: caller.messagesPerHour
      }, NO_CHECK)
    },
    NO_CHECK
  )
}

export const writeAccepted = (exit: Exit.Exit<unknown, unknown>): string | undefined => {
  if (!Exit.isSuccess(exit) || !(exit.value instanceof AcceptedMessage)) return undefined
  const { createdAt, messageId, status } = exit.value
  if (
    !MESSAGE_ID.test(messageId) || typeof status !== "string" || !DateTime.isDateTime(createdAt) ||
    !DateTime.isUtc(createdAt)
  ) return undefined
  return JSON.stringify({ _tag: "Success", value: { messageId, status, createdAt: DateTime.formatIso(createdAt) } })
}

export const readAccepted = (text: string): AcceptedMessage | undefined => {
  const json = parsed(text)
  const value = isRecord(json) && json._tag === "Success" ? json.value : undefined
  if (
    !isRecord(value) || typeof value.messageId !== "string" || !MESSAGE_ID.test(value.messageId) ||
    typeof value.status !== "string" || typeof value.createdAt !== "string"
  ) return undefined
  const createdAt = DateTime.make(value.createdAt)
  if (Option.isNone(createdAt) || !DateTime.isUtc(createdAt.value)) return undefined
  return new AcceptedMessage({
    messageId: MessageId.make(value.messageId, NO_CHECK),
    status: value.status,
    createdAt: createdAt.value
  }, NO_CHECK)
}
