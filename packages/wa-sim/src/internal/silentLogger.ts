/** Baileys' logger interface, saying nothing: the sim reports through its own API, not Baileys' logs. */
import type { ILogger } from "@whiskeysockets/baileys/lib/Utils/logger.js"

const noop = () => undefined

export const silentLogger: ILogger = {
  level: "silent",
  child: () => silentLogger,
  trace: noop,
  debug: noop,
  info: noop,
  warn: noop,
  error: noop
}
