import { describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, List, Logger, LogLevel, type Runtime } from "effect"
import { makeLogger } from "../src/internal/BaileysLogger.js"

interface Line {
  readonly level: string
  readonly message: string
  readonly annotations: Record<string, unknown>
}

/** A Baileys logger whose lines land in `lines`, through Effect's logging as in the node. */
const capture = (level: "debug" | "info" | "warn") => {
  const lines: Array<Line> = []
  const sink = Logger.make(({ annotations, logLevel, message }) => {
    lines.push({
      level: logLevel.label,
      message: List.isList(message) ? "" : String(Array.isArray(message) ? message.join(" ") : message),
      annotations: Object.fromEntries(HashMap.toEntries(annotations))
    })
  })
  const runtime = Effect.runSync(
    Effect.runtime<never>().pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, sink)),
      Logger.withMinimumLogLevel(LogLevel.All)
    )
  )
  return { lines, logger: makeLogger(runtime as Runtime.Runtime<never>, level, { sessionId: "sess_test" }) }
}

const DANGER =
  "⚠️ DANGER: DISABLING ALL SYNC BY shouldSyncHistoryMsg PREVENTS BAILEYS FROM ACCESSING INITIAL LID MAPPINGS, " +
  "LEADING TO INSTABILIY AND SESSION ERRORS"

describe("the Baileys logger bridge", () => {
  it("says once per process, at info, that history sync is off; every socket's warning after that is debug", () => {
    const { lines, logger } = capture("debug")
    logger.warn(DANGER)
    logger.warn(DANGER)
    logger.child({ sessionId: "sess_other" }).warn(DANGER)
    expect(lines.map((line) => line.level)).toEqual(["INFO", "DEBUG", "DEBUG"])
    expect(lines[0]?.message).toContain("history sync is off")
    expect(lines.filter((line) => line.level === "WARN")).toEqual([])
  })

  it("keeps real warnings as warnings, with the session and Baileys' fields as annotations", () => {
    const { lines, logger } = capture("warn")
    logger.warn({ attempt: 3, reason: new Uint8Array(4) }, "failed to decrypt message")
    logger.debug("frame received")
    expect(lines).toEqual([{
      level: "WARN",
      message: "failed to decrypt message",
      annotations: { component: "baileys", sessionId: "sess_test", attempt: "3", reason: "\"<4 bytes>\"" }
    }])
  })

  it("logs the restart WhatsApp asks for after pairing (stream error 515) at debug, and nothing at warn", () => {
    const { lines, logger } = capture("warn")
    logger.error({ fullErrorNode: { tag: "stream:error", attrs: { code: "515" } } }, "stream errored out")
    expect(lines).toEqual([])
    logger.error({ fullErrorNode: { tag: "stream:error", attrs: { code: "503" } } }, "stream errored out")
    expect(lines.map((line) => line.level)).toEqual(["ERROR"])
  })
})
