/**
 * Process-wide logging for services: `LOG_LEVEL` and `LOG_FORMAT` (pretty for people, json for machines).
 */
import { Config, Context, Effect, Layer, Logger, LogLevel } from "effect"

export class Logging extends Context.Tag("@wacluster/cluster/Logging")<Logging, { readonly service: string }>() {
  static readonly layer = (service: string) =>
    Layer.unwrapEffect(
      Effect.gen(function*() {
        const level = yield* Config.logLevel("LOG_LEVEL").pipe(
          Config.withDefault(LogLevel.Info),
          Config.withDescription("Minimum log level: Trace, Debug, Info, Warn, Error, Fatal, None")
        )
        const format = yield* Config.literal("pretty", "json", "logfmt")("LOG_FORMAT").pipe(
          Config.withDefault("logfmt"),
          Config.withDescription("Log line format")
        )
        const logger = format === "json" ? Logger.json : format === "pretty" ? Logger.pretty : Logger.logFmt
        return Layer.mergeAll(
          logger,
          Logger.minimumLogLevel(level),
          Layer.succeed(Logging, { service })
        )
      })
    )
}
