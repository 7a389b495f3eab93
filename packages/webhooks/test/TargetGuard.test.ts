import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Exit } from "effect"
import { checkUrl, makePolicy, refusal, type TargetPolicy } from "../src/TargetGuard.js"

const policy = (cidrs: ReadonlyArray<string> = []): TargetPolicy => Either.getOrThrow(makePolicy(cidrs))

describe("TargetGuard", () => {
  it("refuses private, loopback, link-local and other reserved addresses, v4 and v6", () => {
    const reserved = [
      "127.0.0.1",
      "10.1.2.3",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "224.0.0.1",
      "255.255.255.255",
      "::1",
      "::",
      "fe80::1",
      "fc00::1",
      "fd12:3456::1",
      "ff02::1",
      // An IPv4 address in IPv6 clothing is judged as the IPv4 address.
      "::ffff:127.0.0.1",
      "::ffff:7f00:1",
      "[::1]"
    ]
    for (const address of reserved) expect(refusal(policy(), address), address).toBeDefined()
  })

  it("lets public addresses through", () => {
    for (const address of ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8"]) {
      expect(refusal(policy(), address), address).toBeUndefined()
    }
  })

  it("allows exactly the networks configured, and names them when it refuses", () => {
    const loopback = policy(["127.0.0.0/8", "::1/128"])
    expect(refusal(loopback, "127.0.0.1")).toBeUndefined()
    expect(refusal(loopback, "127.200.0.9")).toBeUndefined()
    expect(refusal(loopback, "::1")).toBeUndefined()
    expect(refusal(loopback, "::ffff:127.0.0.1")).toBeUndefined()
    expect(refusal(loopback, "10.0.0.1")).toContain("allowed networks: 127.0.0.0/8, ::1/128")
  })

  it("rejects a malformed allow-list with a reason", () => {
    expect(Either.isLeft(makePolicy(["10.0.0.0/33"]))).toBe(true)
    expect(Either.isLeft(makePolicy(["intranet"]))).toBe(true)
    expect(Either.isLeft(makePolicy(["::/129"]))).toBe(true)
    expect(Either.isRight(makePolicy(["", " 10.0.0.0/8 "]))).toBe(true)
  })

  it.effect("checks a URL: http(s) only, a literal address or every address a name resolves to", () =>
    Effect.gen(function*() {
      const refused = (url: string) =>
        Effect.map(
          Effect.exit(checkUrl(policy(), url)),
          (exit) => Exit.isFailure(exit) ? JSON.stringify(exit.cause) : undefined
        )
      expect(yield* refused("ftp://93.184.216.34/in")).toContain("must be http or https")
      expect(yield* refused("not a url")).toContain("is not a URL")
      expect(yield* refused("http://127.0.0.1:3000/hook")).toContain("loopback")
      expect(yield* refused("http://[::1]/hook")).toContain("::1")
      // localhost resolves to loopback: refused by what it resolves to.
      expect(yield* refused("http://localhost:3000/hook")).toContain("localhost resolves to")
      expect(yield* refused("https://no-such-host.invalid/hook")).toContain("does not resolve")
      expect(yield* refused("https://93.184.216.34/hook")).toBeUndefined()
      const allowed = yield* checkUrl(policy(["127.0.0.0/8", "::1/128"]), "http://localhost:3000/hook")
      expect(allowed.port).toBe("3000")
    }))
})
