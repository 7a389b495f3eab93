import { describe, expect, it } from "@effect/vitest"
import { Option, Schema } from "effect"
import { cities, City, Continent, findCity } from "../src/Cities.js"

const slugOf = (input: string) => Option.map(findCity(input), (city) => city.slug)

describe("Cities", () => {
  it("holds exactly the 164 cities the product advertises", () => {
    expect(cities).toHaveLength(164)
  })

  it("has unique slugs, proxy slugs and names", () => {
    expect(new Set(cities.map((city) => city.slug)).size).toBe(cities.length)
    expect(new Set(cities.map((city) => city.proxySlug)).size).toBe(cities.length)
    expect(new Set(cities.map((city) => city.name)).size).toBe(cities.length)
  })

  it.each([
    ["Medan", "ID", "Asia/Jakarta"],
    ["Bandung", "ID", "Asia/Jakarta"],
    ["Surabaya", "ID", "Asia/Jakarta"],
    ["Jakarta", "ID", "Asia/Jakarta"],
    ["Bangkok", "TH", "Asia/Bangkok"],
    ["Singapore", "SG", "Asia/Singapore"],
    ["Mumbai", "IN", "Asia/Kolkata"],
    ["New Delhi", "IN", "Asia/Kolkata"],
    ["London", "GB", "Europe/London"],
    ["New York", "US", "America/New_York"],
    ["Los Angeles", "US", "America/Los_Angeles"],
    ["São Paulo", "BR", "America/Sao_Paulo"],
    ["Lagos", "NG", "Africa/Lagos"]
  ])("lists %s, named in the product docs, in %s", (name, countryCode, timeZone) => {
    const city = cities.find((city) => city.name === name)
    expect(city?.countryCode).toBe(countryCode)
    expect(city?.timeZone).toBe(timeZone)
  })

  it("covers every inhabited continent with at least 3 cities", () => {
    for (const continent of Continent.literals) {
      expect(cities.filter((city) => city.continent === continent).length, continent).toBeGreaterThanOrEqual(3)
    }
  })

  it("uses time zones the runtime knows", () => {
    for (const { slug, timeZone } of cities) {
      expect(() => new Intl.DateTimeFormat("en-US", { timeZone }), slug).not.toThrow()
    }
  })

  it("uses proxy slugs with no separators", () => {
    for (const { proxySlug } of cities) expect(proxySlug).toMatch(/^[a-z0-9]+$/)
  })

  it("round-trips every entry through the City schema", () => {
    const encode = Schema.encodeSync(City)
    const decode = Schema.decodeUnknownSync(City)
    for (const city of cities) expect(decode(encode(city))).toEqual(city)
  })

  it("rejects a slug that is not kebab-case", () => {
    const encoded = { ...Schema.encodeSync(City)(Option.getOrThrow(findCity("medan"))), slug: "Sao Paulo" }
    expect(() => Schema.decodeUnknownSync(City)(encoded)).toThrow()
  })

  it("is sorted by continent, then country, then name", () => {
    const collator = new Intl.Collator("en")
    const compare = (a: City, b: City) =>
      collator.compare(a.continent, b.continent) || collator.compare(a.country, b.country) ||
      collator.compare(a.name, b.name)
    cities.slice(1).forEach((city, i) => {
      const previous = cities[i]
      if (previous) expect(compare(previous, city), `${previous.slug} before ${city.slug}`).toBeLessThan(0)
    })
  })

  describe("findCity", () => {
    it.each([
      ["sao-paulo", "slug"],
      ["São Paulo", "display name"],
      ["são paulo", "lowercase name"],
      ["SÃO PAULO", "uppercase name"],
      ["Sao Paulo", "name without diacritics"],
      ["sao paulo", "lowercase name without diacritics"],
      ["  São Paulo \n", "name with surrounding whitespace"]
    ])("finds São Paulo by %j (%s)", (input) => {
      expect(slugOf(input)).toEqual(Option.some("sao-paulo"))
    })

    it("finds cities whose names carry punctuation or several accents", () => {
      expect(slugOf("Washington, D.C.")).toEqual(Option.some("washington"))
      expect(slugOf("zurich")).toEqual(Option.some("zurich"))
      expect(slugOf("Kraków")).toEqual(Option.some("krakow"))
      expect(slugOf("ho chi minh city")).toEqual(Option.some("ho-chi-minh-city"))
    })

    it("finds every city by its own slug and its own name", () => {
      for (const city of cities) {
        expect(slugOf(city.slug)).toEqual(Option.some(city.slug))
        expect(slugOf(city.name)).toEqual(Option.some(city.slug))
      }
    })

    it("returns None for unknown or empty input", () => {
      expect(findCity("Atlantis")).toEqual(Option.none())
      expect(findCity("")).toEqual(Option.none())
      expect(findCity("   ")).toEqual(Option.none())
    })
  })
})
