/**
 * Baileys logs through a pino-shaped logger; this one forwards to Effect's logging so the node has one log
 * stream with one format. Levels below the configured one cost a comparison and nothing else, which matters:
 * Baileys logs every frame at trace level.
 */
import type { ILogger } from "@whiskeysockets/baileys/lib/Utils/logger.js"
import { Effect, LogLevel, Runtime } from "effect"

const order = { trace: 10, debug: 20, info: 30, warn: 40, error: 50 } as const
type Level = keyof typeof order

const effectLevel: Record<Level, LogLevel.LogLevel> = {
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warn: LogLevel.Warning,
  error: LogLevel.Error
}

/** pino's call shapes: (message), (object, message) or (object). */
const split = (first: unknown, message: string | undefined) => {
  if (typeof first === "string") return { text: first, fields: {} }
  if (first instanceof Error) return { text: message ?? first.message, fields: { error: first.message } }
  const fields = typeof first === "object" && first !== null ? first : { value: first }
  return { text: message ?? "baileys", fields }
}

const describe = (value: unknown): string => {
  if (typeof value === "string") return value
  if (value instanceof Error) return value.message
  try {
    return JSON.stringify(
      value,
      (_key, inner: unknown) =>
        typeof inner === "bigint" ? inner.toString() : inner instanceof Uint8Array ? `<${inner.length} bytes>` : inner
    )
  } catch {
    return String(value)
  }
}

/**
 * Messages Baileys logs as warnings or errors on a perfectly normal path: the restart WhatsApp asks for right
 * after pairing (stream error 515), and the presence update skipped on every connect of an account whose push
 * name has not synced yet. Logged at debug, so real problems stand out.
 */
const isRestartRequest = (fields: object): boolean => {
  const node = "fullErrorNode" in fields ? fields.fullErrorNode : undefined
  if (typeof node !== "object" || node === null || !("attrs" in node)) return false
  const attrs = node.attrs
  return typeof attrs === "object" && attrs !== null && "code" in attrs && attrs.code === "515"
}

const routine = (text: string, fields: object): boolean =>
  text.startsWith("no name present, ignoring presence update") ||
  (text === "stream errored out" && isRestartRequest(fields))

/**
 * Baileys warns on every socket it creates that history sync is off: our choice (a server keeps no chat history
 * from the phone), not a problem of that socket. Said once per process at info, then at debug.
 */
const isHistorySyncNotice = (text: string): boolean => text.includes("DISABLING ALL SYNC")
let historySyncNoticed = false

export const makeLogger = (
  runtime: Runtime.Runtime<never>,
  level: Level,
  bindings: Record<string, unknown>
): ILogger => {
  const threshold = order[level]
  const emit = (at: Level) => (first: unknown, message?: string) => {
    if (order[at] < threshold) return
    const { fields, text } = split(first, message)
    if (order[at] >= order.warn && isHistorySyncNotice(text)) {
      const firstTime = !historySyncNoticed
      historySyncNoticed = true
      if (firstTime && order.info >= threshold) {
        return emitAt(LogLevel.Info, "history sync is off (syncFullHistory false, no history messages processed)", {})
      }
      if (order.debug >= threshold) emitAt(LogLevel.Debug, text, fields)
      return
    }
    if (order[at] >= order.warn && routine(text, fields)) {
      if (order.debug >= threshold) emit("debug")(first, message)
      return
    }
    emitAt(effectLevel[at], text, fields)
  }
  const emitAt = (logLevel: LogLevel.LogLevel, text: string, fields: object) => {
    const annotations: Record<string, string> = { component: "baileys" }
    for (const [key, value] of Object.entries({ ...bindings, ...fields })) annotations[key] = describe(value)
    Runtime.runSync(runtime)(Effect.logWithLevel(logLevel, text).pipe(Effect.annotateLogs(annotations)))
  }
  return {
    level,
    child: (more) => makeLogger(runtime, level, { ...bindings, ...more }),
    trace: emit("trace"),
    debug: emit("debug"),
    info: emit("info"),
    warn: emit("warn"),
    error: emit("error")
  }
}
