/**
 * Handlers that need no credentials: liveness and the city catalog.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { CityList, Health, WaclusterApi } from "@wacluster/domain/Api"
import { cities } from "@wacluster/domain/Cities"
import { Effect } from "effect"

export const HealthLive = HttpApiBuilder.group(WaclusterApi, "health", (handlers) =>
  Effect.gen(function*() {
    const startedAt = Date.now()
    return handlers.handle("healthz", () =>
      Effect.succeed(new Health({ status: "ok", service: "gateway", uptimeSeconds: (Date.now() - startedAt) / 1000 })))
  }))

export const CitiesLive = HttpApiBuilder.group(
  WaclusterApi,
  "cities",
  (handlers) =>
    handlers.handle("list", ({ urlParams }) =>
      Effect.sync(() => {
        const country = urlParams.country?.trim().toUpperCase()
        const selected = cities.filter((city) =>
          (urlParams.continent === undefined || city.continent === urlParams.continent) &&
          (country === undefined || city.countryCode === country)
        )
        return new CityList({ count: selected.length, cities: selected })
      }))
)
