import { describe, expect, it } from "@effect/vitest"
import { findCity } from "@wacluster/domain/Cities"
import { SessionId } from "@wacluster/domain/Ids"
import { ConfigProvider, Duration, Effect, Option, Redacted } from "effect"
import { maskedProxyUrl, ProxyConfig, proxyUrl } from "../src/ProxyConfig.js"

const saoPaulo = Option.getOrThrow(findCity("sao-paulo"))
const newYork = Option.getOrThrow(findCity("new-york"))
const sessionId = SessionId.make("sess_proxyConfigTest00000")
const template = "socks5://user-country-{country}-city-{city}-session-{sticky}:{password}@proxy.example:7000"

const load = (env: Record<string, string>) =>
  ProxyConfig.config.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))

/** The config error as a person reading the node's startup failure would see it. */
const problem = (env: Record<string, string>) => Effect.map(Effect.flip(load(env)), String)

describe("ProxyConfig", () => {
  it.effect("expands the template with the catalog's country and proxy slug", () =>
    Effect.gen(function*() {
      const config = yield* load({ PROXY_URL_TEMPLATE: template, PROXY_PASSWORD: "hunter2" })
      const parsed = Option.getOrThrow(config.template)
      expect(parsed.scheme).toBe("socks5")
      expect(proxyUrl(parsed, config.password, { sessionId, city: saoPaulo, sticky: "Ab3dEf6hIj9k" })).toBe(
        "socks5://user-country-br-city-saopaulo-session-Ab3dEf6hIj9k:hunter2@proxy.example:7000"
      )
      expect(proxyUrl(parsed, config.password, { sessionId, city: newYork, sticky: "zz" })).toBe(
        "socks5://user-country-us-city-newyork-session-zz:hunter2@proxy.example:7000"
      )
    }))

  it.effect("fills {session} with the session id", () =>
    Effect.gen(function*() {
      const config = yield* load({ PROXY_URL_TEMPLATE: "http://{session}-{city}@127.0.0.1:8080" })
      const url = proxyUrl(Option.getOrThrow(config.template), config.password, {
        sessionId,
        city: saoPaulo,
        sticky: "x"
      })
      expect(new URL(url).username).toBe("sess_proxyConfigTest00000-saopaulo")
    }))

  it.effect("URL-encodes the password, so a proxy decodes exactly what was configured", () =>
    Effect.gen(function*() {
      const password = "p@ss:w/rd%#?"
      const config = yield* load({ PROXY_URL_TEMPLATE: template, PROXY_PASSWORD: password })
      const url = proxyUrl(Option.getOrThrow(config.template), config.password, {
        sessionId,
        city: saoPaulo,
        sticky: "s"
      })
      const parsed = new URL(url)
      expect(parsed.hostname).toBe("proxy.example")
      expect(parsed.port).toBe("7000")
      expect(decodeURIComponent(parsed.password)).toBe(password)
      // The password is a secret: it stays redacted in the config itself.
      expect(String(Option.getOrThrow(config.password))).not.toContain("p@ss")
      expect(Redacted.value(Option.getOrThrow(config.password))).toBe(password)
    }))

  it.effect("masks the password in the URL meant for logs, from {password} or written into the template", () =>
    Effect.gen(function*() {
      const withPlaceholder = Option.getOrThrow(
        (yield* load({ PROXY_URL_TEMPLATE: template, PROXY_PASSWORD: "hunter2" })).template
      )
      const masked = maskedProxyUrl(withPlaceholder, { sessionId, city: saoPaulo, sticky: "Ab3dEf6hIj9k" })
      expect(masked).toBe("socks5://user-country-br-city-saopaulo-session-Ab3dEf6hIj9k:***@proxy.example:7000")
      const literal = Option.getOrThrow(
        (yield* load({ PROXY_URL_TEMPLATE: "http://user-{city}:literalsecret@proxy.example:8080" })).template
      )
      const maskedLiteral = maskedProxyUrl(literal, { sessionId, city: saoPaulo, sticky: "s" })
      expect(maskedLiteral).not.toContain("literalsecret")
      expect(maskedLiteral).toContain("user-saopaulo:***@proxy.example:8080")
    }))

  it.effect("without a template sessions connect directly, and the timeout defaults to 10 s", () =>
    Effect.gen(function*() {
      const config = yield* load({})
      expect(Option.isNone(config.template)).toBe(true)
      expect(Duration.toMillis(config.connectTimeout)).toBe(10_000)
      const tuned = yield* load({ PROXY_CONNECT_TIMEOUT: "3 seconds" })
      expect(Duration.toMillis(tuned.connectTimeout)).toBe(3_000)
    }))

  it.effect("accepts every supported scheme", () =>
    Effect.gen(function*() {
      for (const scheme of ["socks5", "socks5h", "socks4", "socks4a", "http", "https"]) {
        const config = yield* load({ PROXY_URL_TEMPLATE: `${scheme}://u-{sticky}@proxy.example:1080` })
        expect(Option.map(config.template, (t) => t.scheme)).toEqual(Option.some(scheme))
      }
    }))

  it.effect("rejects an unknown placeholder, naming it and the allowed ones", () =>
    Effect.gen(function*() {
      const message = yield* problem({ PROXY_URL_TEMPLATE: "socks5://u-{region}-{sticky}@proxy.example:7000" })
      expect(message).toContain("PROXY_URL_TEMPLATE")
      expect(message).toContain("unknown placeholder {region}")
      expect(message).toContain("{country}, {city}, {sticky}, {session}, {password}")
    }))

  it.effect("rejects an unsupported scheme", () =>
    Effect.gen(function*() {
      const message = yield* problem({ PROXY_URL_TEMPLATE: "ftp://u-{sticky}@proxy.example:21" })
      expect(message).toContain("PROXY_URL_TEMPLATE")
      expect(message).toContain("unsupported scheme \"ftp\"")
    }))

  it.effect("rejects text that is not a URL, and unbalanced braces", () =>
    Effect.gen(function*() {
      const notUrl = yield* problem({ PROXY_URL_TEMPLATE: "proxy.example:7000 user {sticky}" })
      expect(notUrl).toContain("PROXY_URL_TEMPLATE")
      expect(notUrl).toContain("not a URL")
      const badPort = yield* problem({ PROXY_URL_TEMPLATE: "socks5://u@proxy.example:{city}" })
      expect(badPort).toContain("not a URL")
      const unbalanced = yield* problem({ PROXY_URL_TEMPLATE: "socks5://u-{sticky@proxy.example:7000" })
      expect(unbalanced).toContain("unbalanced")
    }))

  it.effect("rejects {password} when PROXY_PASSWORD is not set", () =>
    Effect.gen(function*() {
      const message = yield* problem({ PROXY_URL_TEMPLATE: template })
      expect(message).toContain("PROXY_PASSWORD")
      expect(message).toContain("uses {password}")
    }))
})
