/**
 * The SSRF guard: a webhook may not point into our own network. Private, loopback, link-local (cloud metadata
 * lives there), multicast and reserved addresses are refused when an endpoint is registered and again on every
 * delivery, after DNS resolution (a name may resolve elsewhere by then), unless config allows the network
 * (`WEBHOOK_ALLOW_NETWORKS`, e.g. `127.0.0.0/8,::1/128` for a receiver on this machine).
 */
import { Config, ConfigError, Data, Effect, Either } from "effect"
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from "node:dns"
import { BlockList, isIP } from "node:net"

export class TargetRefused extends Data.TaggedError("TargetRefused")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

const RESERVED: ReadonlyArray<readonly [string, number, "ipv4" | "ipv6", string]> = [
  ["0.0.0.0", 8, "ipv4", "a 'this network' address"],
  ["10.0.0.0", 8, "ipv4", "a private address"],
  ["100.64.0.0", 10, "ipv4", "a shared (carrier-grade NAT) address"],
  ["127.0.0.0", 8, "ipv4", "a loopback address"],
  ["169.254.0.0", 16, "ipv4", "a link-local address"],
  ["172.16.0.0", 12, "ipv4", "a private address"],
  ["192.0.0.0", 24, "ipv4", "a reserved address"],
  ["192.0.2.0", 24, "ipv4", "a documentation address"],
  ["192.168.0.0", 16, "ipv4", "a private address"],
  ["198.18.0.0", 15, "ipv4", "a benchmarking address"],
  ["198.51.100.0", 24, "ipv4", "a documentation address"],
  ["203.0.113.0", 24, "ipv4", "a documentation address"],
  ["224.0.0.0", 4, "ipv4", "a multicast address"],
  ["240.0.0.0", 4, "ipv4", "a reserved address"],
  ["::", 128, "ipv6", "the unspecified address"],
  ["::1", 128, "ipv6", "a loopback address"],
  ["fc00::", 7, "ipv6", "a private (unique local) address"],
  ["fe80::", 10, "ipv6", "a link-local address"],
  ["ff00::", 8, "ipv6", "a multicast address"],
  ["2001:db8::", 32, "ipv6", "a documentation address"]
]

const reserved = RESERVED.map(([network, prefix, family, label]) => {
  const list = new BlockList()
  list.addSubnet(network, prefix, family)
  return { list, family, label }
})

/** The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d, also written ::ffff:7f00:1). */
const mappedIpv4 = (address: string): string | undefined => {
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (dotted !== null) return dotted[1]
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address)
  if (hex === null) return undefined
  const high = parseInt(hex[1] ?? "0", 16)
  const low = parseInt(hex[2] ?? "0", 16)
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`
}

export interface TargetPolicy {
  /** Networks allowed although reserved. */
  readonly allowed: BlockList
  /** The CIDRs of `allowed`, for messages. */
  readonly allowedText: ReadonlyArray<string>
}

const parseCidr = (cidr: string): Either.Either<readonly [string, number, "ipv4" | "ipv6"], string> => {
  const [network = "", prefixText] = cidr.trim().split("/")
  const family = isIP(network)
  if (family === 0) return Either.left(`"${cidr}" is not a network (address/prefix, e.g. 127.0.0.0/8)`)
  const max = family === 4 ? 32 : 128
  const prefix = prefixText === undefined ? max : Number(prefixText)
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) {
    return Either.left(`"${cidr}": the prefix must be 0-${max}`)
  }
  return Either.right([network, prefix, family === 4 ? "ipv4" : "ipv6"] as const)
}

export const makePolicy = (cidrs: ReadonlyArray<string>): Either.Either<TargetPolicy, string> =>
  Either.map(Either.all(cidrs.filter((cidr) => cidr.trim() !== "").map(parseCidr)), (networks) => {
    const allowed = new BlockList()
    for (const [network, prefix, family] of networks) allowed.addSubnet(network, prefix, family)
    return { allowed, allowedText: networks.map(([network, prefix]) => `${network}/${prefix}`) }
  })

export const policyConfig: Config.Config<TargetPolicy> = Config.array(Config.string(), "WEBHOOK_ALLOW_NETWORKS").pipe(
  Config.withDefault([]),
  Config.mapOrFail((cidrs) =>
    Either.mapLeft(makePolicy(cidrs), (problem) => ConfigError.InvalidData(["WEBHOOK_ALLOW_NETWORKS"], problem))
  ),
  Config.withDescription(
    "Networks webhooks may target although private, loopback or link-local (comma-separated CIDRs; default none)"
  )
)

/** Why the address may not be a webhook target, or undefined when it may. */
export const refusal = (policy: TargetPolicy, rawAddress: string): string | undefined => {
  const address = rawAddress.replace(/^\[|\]$/g, "")
  const family = isIP(address)
  if (family === 0) return `${address} is not an IP address`
  const type = family === 4 ? "ipv4" : "ipv6"
  if (policy.allowed.check(address, type)) return undefined
  const inner = type === "ipv6" ? mappedIpv4(address) : undefined
  if (inner !== undefined) return refusal(policy, inner)
  const hit = reserved.find((range) => range.family === type && range.list.check(address, type))
  if (hit === undefined) return undefined
  return `${address} is ${hit.label}; webhooks may not target it` +
    (policy.allowedText.length === 0 ? "" : ` (allowed networks: ${policy.allowedText.join(", ")})`)
}

const resolveAll = (host: string) =>
  Effect.async<ReadonlyArray<LookupAddress>, TargetRefused>((resume) => {
    dnsLookup(host, { all: true, verbatim: true }, (error, addresses) => {
      resume(
        error === null
          ? Effect.succeed(addresses)
          : Effect.fail(new TargetRefused({ reason: `${host} does not resolve (${error.code ?? error.message})` }))
      )
    })
  })

/** Checks a URL as an endpoint: http(s), and every address its host resolves to allowed. */
export const checkUrl = (policy: TargetPolicy, raw: string): Effect.Effect<URL, TargetRefused> =>
  Effect.gen(function*() {
    const url = URL.canParse(raw) ? new URL(raw) : undefined
    if (url === undefined) return yield* new TargetRefused({ reason: `"${raw}" is not a URL` })
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      return yield* new TargetRefused({ reason: `the URL must be http or https, not ${url.protocol.slice(0, -1)}` })
    }
    const host = url.hostname.replace(/^\[|\]$/g, "")
    const addresses = isIP(host) !== 0 ? [host] : (yield* resolveAll(host)).map((entry) => entry.address)
    for (const address of addresses) {
      const problem = refusal(policy, address)
      if (problem !== undefined) {
        return yield* new TargetRefused({ reason: host === address ? problem : `${host} resolves to ${problem}` })
      }
    }
    return url
  })

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | Array<LookupAddress>,
  family?: number
) => void

/**
 * A `lookup` for sockets (undici's `connect.lookup`): resolves as usual, then refuses addresses the policy does
 * not allow, so a name that resolved to a public address at registration cannot be pointed inside later.
 */
export const guardedLookup =
  (policy: TargetPolicy) => (hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error !== null) return callback(error, [])
      const problem = addresses.map((entry) => refusal(policy, entry.address)).find((reason) => reason !== undefined)
      if (problem !== undefined) {
        const refused: NodeJS.ErrnoException = new Error(`${hostname} resolves to ${problem}`)
        refused.code = "EWEBHOOKTARGET"
        return callback(refused, [])
      }
      if (options.all === true) return callback(null, addresses)
      const first = addresses[0]
      if (first === undefined) return callback(new Error(`${hostname} has no address`), [])
      callback(null, first.address, first.family)
    })
  }
