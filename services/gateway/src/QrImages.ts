/**
 * QR strings drawn as images for people to scan. Drawing happens on the gateway, so the node that runs the
 * session only hands over the string.
 */
import { Context, Data, Effect, Layer } from "effect"
import QRCode from "qrcode"

export class QrRenderError extends Data.TaggedError("QrRenderError")<{ readonly cause: unknown }> {}

/** Large enough for a phone camera across a room, with the quiet zone scanners need. */
const drawing = { errorCorrectionLevel: "M", margin: 4, scale: 8 } as const

export class QrImages extends Context.Tag("@wacluster/gateway/QrImages")<QrImages, {
  readonly png: (text: string) => Effect.Effect<Uint8Array, QrRenderError>
  readonly svg: (text: string) => Effect.Effect<string, QrRenderError>
}>() {
  static readonly layer = Layer.succeed(
    QrImages,
    QrImages.of({
      png: (text) =>
        Effect.tryPromise({
          try: () => QRCode.toBuffer(text, { ...drawing, type: "png" }),
          catch: (cause) => new QrRenderError({ cause })
        }),
      svg: (text) =>
        Effect.tryPromise({
          try: () => QRCode.toString(text, { ...drawing, type: "svg" }),
          catch: (cause) => new QrRenderError({ cause })
        })
    })
  )
}
