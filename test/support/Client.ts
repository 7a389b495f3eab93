/**
 * The typed client a tenant's TypeScript code would use: derived from the same HttpApi contract the gateway serves
 * (HttpApiClient), so a route, payload or answer that drifts from the contract fails here. Raw `call` stays for
 * what a typed client cannot send (malformed bodies, wrong types).
 */
import { FetchHttpClient, HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { WaclusterApi } from "@wacluster/domain/Api"
import { Effect } from "effect"

export type Credentials = { readonly apiKey: string } | { readonly bearer: string }

const withCredentials = (credentials: Credentials) =>
  HttpClient.mapRequest(
    "apiKey" in credentials
      ? HttpClientRequest.setHeader("x-api-key", credentials.apiKey)
      : HttpClientRequest.bearerToken(credentials.bearer)
  )

/** A client of the gateway at `baseUrl`, calling with `credentials`. */
export const clientOf = (baseUrl: string, credentials: Credentials) =>
  HttpApiClient.make(WaclusterApi, { baseUrl, transformClient: withCredentials(credentials) }).pipe(
    Effect.provide(FetchHttpClient.layer)
  )

export type Client = Effect.Effect.Success<ReturnType<typeof clientOf>>

/** Runs one call of a client (its requirements are already provided) as a promise. */
export const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(effect)

/** Runs one call and answers its typed failure instead of throwing it. */
export const fails = <A, E>(effect: Effect.Effect<A, E>): Promise<E> => Effect.runPromise(Effect.flip(effect))
