/**
 * Posts a delivery with undici: the one place that touches the HTTP client. Redirects are not followed (a 3xx is a
 * failure, as a redirect could lead inside the network), every connection goes through the SSRF guard's lookup, and
 * an answer is read only far enough to explain a failure in the delivery log.
 */
import * as SlowStops from "@wacluster/cluster/SlowStops"
import { Context, Duration, Effect, Layer } from "effect"
import { isIP } from "node:net"
import { Agent, errors, request } from "undici"
import { guardedLookup, refusal, type TargetPolicy } from "./TargetGuard.js"

export interface PostResult {
  readonly succeeded: boolean
  /** The HTTP status, when the endpoint answered. */
  readonly statusCode: number | null
  readonly latencyMs: number
  /** Why it failed, for the delivery log. */
  readonly error: string | null
}

export class WebhookClient extends Context.Tag("@wacluster/webhooks/WebhookClient")<WebhookClient, {
  readonly post: (url: string, headers: Record<string, string>, body: string) => Effect.Effect<PostResult>
}>() {}

/** How much of a failed answer's body the log keeps. */
const EXCERPT_BYTES = 512

const readExcerpt = async (body: AsyncIterable<Uint8Array> & { destroy: () => unknown }) => {
  const chunks: Array<Buffer> = []
  let size = 0
  for await (const chunk of body) {
    chunks.push(Buffer.from(chunk))
    size += chunk.length
    if (size >= EXCERPT_BYTES) break
  }
  body.destroy()
  return Buffer.concat(chunks).subarray(0, EXCERPT_BYTES).toString("utf8").replace(/\s+/g, " ").trim()
}

const describe = (cause: unknown, timeoutMs: number): string => {
  if (cause instanceof errors.HeadersTimeoutError || cause instanceof errors.BodyTimeoutError) {
    return `no answer within ${timeoutMs} ms`
  }
  if (cause instanceof errors.ConnectTimeoutError) return `could not connect within ${timeoutMs} ms`
  if (cause instanceof Error && cause.name === "TimeoutError") return `no answer within ${timeoutMs} ms`
  if (cause instanceof Error) {
    const code = "code" in cause && typeof cause.code === "string" ? cause.code : undefined
    if (code === "EWEBHOOKTARGET") return `refused: ${cause.message}`
    const inner = cause.cause instanceof Error ? `: ${cause.cause.message}` : ""
    return code === undefined ? `${cause.message}${inner}` : `${cause.message} (${code})${inner}`
  }
  return String(cause)
}

export const make = (policy: TargetPolicy, timeout: Duration.Duration) =>
  Effect.gen(function*() {
    const timeoutMs = Duration.toMillis(timeout)
    const agent = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Agent({
          connect: { lookup: guardedLookup(policy), timeout: timeoutMs },
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
          keepAliveTimeout: 10_000
        })
      ),
      (agent) =>
        Effect.promise(() => agent.close().catch(() => agent.destroy())).pipe(SlowStops.track("webhook connections"))
    )

    const post = (url: string, headers: Record<string, string>, body: string) =>
      Effect.promise(async (signal): Promise<PostResult> => {
        const started = performance.now()
        const elapsed = () => performance.now() - started
        // A literal address is never looked up, so the guard's lookup would not see it.
        const host = new URL(url).hostname.replace(/^\[|\]$/g, "")
        const refused = isIP(host) === 0 ? undefined : refusal(policy, host)
        if (refused !== undefined) {
          return { succeeded: false, statusCode: null, latencyMs: 0, error: `refused: ${refused}` }
        }
        try {
          const answer = await request(url, {
            method: "POST",
            headers: { "content-type": "application/json", "user-agent": "wacluster-webhooks/1", ...headers },
            body,
            dispatcher: agent,
            signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
          })
          const statusCode = answer.statusCode
          if (statusCode >= 200 && statusCode < 300) {
            await answer.body.dump()
            return { succeeded: true, statusCode, latencyMs: elapsed(), error: null }
          }
          const excerpt = await readExcerpt(answer.body).catch(() => "")
          return {
            succeeded: false,
            statusCode,
            latencyMs: elapsed(),
            error: `HTTP ${statusCode}${excerpt === "" ? "" : `: ${excerpt}`}`
          }
        } catch (cause) {
          return { succeeded: false, statusCode: null, latencyMs: elapsed(), error: describe(cause, timeoutMs) }
        }
      })

    return WebhookClient.of({ post })
  })

export const layer = (policy: TargetPolicy, timeout: Duration.Duration) =>
  Layer.scoped(WebhookClient, make(policy, timeout))
