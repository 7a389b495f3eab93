/**
 * Residential proxy settings (DESIGN.md "Proxy by city"). One URL template yields a sticky proxy per session:
 * `socks5://user-country-{country}-city-{city}-session-{sticky}:{password}@proxy.example:7000`. Without a template
 * sessions connect directly (development). The template is checked when the config is read, so a typo fails the
 * node at start instead of every WhatsApp connect later.
 */
import type { City } from "@wacluster/domain/Cities"
import type { SessionId } from "@wacluster/domain/Ids"
import { Config, ConfigError, Context, Duration, Either, Layer, Option, Redacted } from "effect"

export const proxySchemes = ["socks5", "socks5h", "socks4", "socks4a", "http", "https"] as const
export type ProxyScheme = typeof proxySchemes[number]

export const placeholders = ["country", "city", "sticky", "session", "password"] as const
export type Placeholder = typeof placeholders[number]

/** A validated template: the text as configured plus what the checks learned about it. */
export interface ProxyTemplate {
  readonly source: string
  readonly scheme: ProxyScheme
  /** The placeholders the template uses, in order of first appearance. */
  readonly uses: ReadonlyArray<Placeholder>
}

export interface ProxyConfigShape {
  /** None: connect directly. */
  readonly template: Option.Option<ProxyTemplate>
  readonly password: Option.Option<Redacted.Redacted<string>>
  /** How long reaching the proxy and opening the tunnel through it may take. */
  readonly connectTimeout: Duration.Duration
}

/** What one session contributes to its proxy URL. */
export interface ProxyTarget {
  readonly sessionId: SessionId
  readonly city: City
  readonly sticky: string
}

const placeholderPattern = /\{([^{}]*)\}/g

const isPlaceholder = (name: string): name is Placeholder => (placeholders as ReadonlyArray<string>).includes(name)
const isScheme = (name: string): name is ProxyScheme => (proxySchemes as ReadonlyArray<string>).includes(name)

const allowedList = placeholders.map((name) => `{${name}}`).join(", ")

/** Realistic values, so a template that only breaks once filled in (say, a port made of `{city}`) is caught. */
const sampleValues: Record<Placeholder, string> = {
  country: "br",
  city: "saopaulo",
  sticky: "Ab3dEf6hIj9k",
  session: "sess_00000000000000000000",
  password: "secret"
}

const fill = (source: string, values: Record<Placeholder, string>): string =>
  source.replace(placeholderPattern, (_, name: string) => isPlaceholder(name) ? values[name] : "")

/** Checks a template; the error text names the problem and is meant for the person editing the config. */
export const parseTemplate = (source: string): Either.Either<ProxyTemplate, string> => {
  const uses: Array<Placeholder> = []
  for (const match of source.matchAll(placeholderPattern)) {
    const name = match[1] ?? ""
    if (!isPlaceholder(name)) {
      return Either.left(`unknown placeholder {${name}}; allowed are ${allowedList}`)
    }
    if (!uses.includes(name)) uses.push(name)
  }
  if (/[{}]/.test(source.replace(placeholderPattern, ""))) {
    return Either.left(`unbalanced "{" or "}"; placeholders look like {city}`)
  }
  const filled = fill(source, sampleValues)
  // "user:pass@host:7000" parses as a URL with scheme "user"; insisting on "://" gives the better message.
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(filled) || !URL.canParse(filled)) {
    return Either.left(
      "not a URL: expected scheme://user:password@host:port, e.g. socks5://user-{sticky}:{password}@proxy.example:7000"
    )
  }
  const url = new URL(filled)
  const scheme = url.protocol.replace(/:$/, "")
  if (!isScheme(scheme)) {
    return Either.left(`unsupported scheme "${scheme}"; use one of ${proxySchemes.join(", ")}`)
  }
  if (url.hostname === "") return Either.left("the URL has no proxy host")
  return Either.right({ source, scheme, uses })
}

const templateConfig = Config.string("PROXY_URL_TEMPLATE").pipe(
  Config.mapOrFail((source) =>
    Either.mapLeft(parseTemplate(source.trim()), (problem) => ConfigError.InvalidData([], problem))
  ),
  Config.option,
  Config.withDescription(
    "Proxy URL per session, e.g. socks5://user-country-{country}-city-{city}-session-{sticky}:{password}@host:7000 " +
      `(schemes ${proxySchemes.join(", ")}; placeholders ${allowedList}). Unset: connect directly`
  )
)

export class ProxyConfig extends Context.Tag("@wacluster/whatsapp/ProxyConfig")<ProxyConfig, ProxyConfigShape>() {
  static readonly config: Config.Config<ProxyConfigShape> = Config.all({
    template: templateConfig,
    password: Config.redacted("PROXY_PASSWORD").pipe(
      Config.option,
      Config.withDescription("Substituted (URL-encoded) for {password} in PROXY_URL_TEMPLATE")
    ),
    connectTimeout: Config.duration("PROXY_CONNECT_TIMEOUT").pipe(
      Config.withDefault(Duration.seconds(10)),
      Config.withDescription(
        "How long reaching the proxy and opening the tunnel may take before the proxy counts as failed"
      )
    )
  }).pipe(
    Config.mapOrFail((shape) =>
      Option.exists(shape.template, (template) => template.uses.includes("password")) && Option.isNone(shape.password)
        ? Either.left(
          ConfigError.InvalidData(
            ["PROXY_PASSWORD"],
            "PROXY_URL_TEMPLATE uses {password} but PROXY_PASSWORD is not set"
          )
        )
        : Either.right(shape)
    )
  )

  static readonly layer = Layer.effect(ProxyConfig, ProxyConfig.config)

  /** Direct connections unless `template` is given; a bad template throws (tests and tools only). */
  static readonly make = (options: {
    readonly template?: string | undefined
    readonly password?: string | undefined
    readonly connectTimeout?: Duration.DurationInput | undefined
  } = {}): ProxyConfigShape => ({
    template: options.template === undefined
      ? Option.none()
      : Option.some(Either.getOrThrowWith(parseTemplate(options.template), (problem) => new Error(problem))),
    password: Option.map(Option.fromNullable(options.password), Redacted.make),
    connectTimeout: Duration.decode(options.connectTimeout ?? Duration.seconds(10))
  })

  static readonly layerWith = (options: Parameters<typeof ProxyConfig.make>[0]) =>
    Layer.sync(ProxyConfig, () => ProxyConfig.make(options))
}

const valuesFor = (target: ProxyTarget, password: string): Record<Placeholder, string> => ({
  country: encodeURIComponent(target.city.countryCode.toLowerCase()),
  city: encodeURIComponent(target.city.proxySlug),
  sticky: encodeURIComponent(target.sticky),
  session: encodeURIComponent(target.sessionId),
  password: encodeURIComponent(password)
})

/** The proxy URL one session uses right now, password included: only for the agent, never for logs. */
export const proxyUrl = (
  template: ProxyTemplate,
  password: Option.Option<Redacted.Redacted<string>>,
  target: ProxyTarget
) => fill(template.source, valuesFor(target, Option.match(password, { onNone: () => "", onSome: Redacted.value })))

const mask = "***"

/** The same URL with the password (from {password} or written into the template) replaced by `***`. */
export const maskedProxyUrl = (template: ProxyTemplate, target: ProxyTarget): string => {
  const filled = fill(template.source, valuesFor(target, mask))
  if (!URL.canParse(filled)) return filled
  const url = new URL(filled)
  if (url.password === "") return filled
  url.password = mask
  return url.href
}
