/**
 * A private database per test file. The Postgres server comes from the test runner (`inject("databaseAdminUrl")`,
 * provided by the repository's globalSetup) or, failing that, from `TEST_DATABASE_URL`. Each call creates a
 * uniquely named database and drops it (WITH FORCE) when its scope closes.
 */
import { SqlClient } from "@effect/sql"
import { makeSessionId, makeTenantId, type TenantId } from "@wacluster/domain/Ids"
import { ShardNumber, shardOf } from "@wacluster/domain/Shard"
import { Duration, Effect, Layer, type Scope } from "effect"
import { randomBytes, randomUUID } from "node:crypto"
import { inject } from "vitest"
import * as ApiKeys from "../src/ApiKeys.js"
import * as AuthCipher from "../src/AuthCipher.js"
import * as AuthState from "../src/AuthState.js"
import * as ClusterMeta from "../src/ClusterMeta.js"
import * as Database from "../src/Database.js"
import * as Events from "../src/Events.js"
import * as Messages from "../src/Messages.js"
import * as Migrations from "../src/Migrations.js"
import * as Outbox from "../src/Outbox.js"
import * as SessionRuntime from "../src/SessionRuntime.js"
import * as Sessions from "../src/Sessions.js"
import * as ShardFences from "../src/ShardFences.js"
import * as Tenants from "../src/Tenants.js"

declare module "vitest" {
  export interface ProvidedContext {
    readonly databaseAdminUrl: string
  }
}

const adminUrl = Effect.suspend(() => {
  const provided: string | undefined = inject("databaseAdminUrl")
  const url = provided ?? process.env.TEST_DATABASE_URL
  return url === undefined || url === ""
    ? Effect.dieMessage("No Postgres for tests: the runner provides none and TEST_DATABASE_URL is unset")
    : Effect.succeed(url)
})

/** Creates an empty database for the current scope and returns its URL. */
export const freshDatabase = (label: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.gen(function*() {
    const url = yield* adminUrl
    const context = yield* Layer.build(Database.layerFromUrl(url, { maxConnections: 1 }))
    const admin = yield* SqlClient.SqlClient.pipe(Effect.provide(context))
    const name = `store_${label}_${randomUUID().replaceAll("-", "").slice(0, 12)}`
    yield* Effect.acquireRelease(
      admin`CREATE DATABASE ${admin(name)}`,
      () => admin`DROP DATABASE IF EXISTS ${admin(name)} WITH (FORCE)`.pipe(Effect.orDie)
    )
    const target = new URL(url)
    target.pathname = `/${name}`
    return target.toString()
  }).pipe(Effect.orDie)

export const TEST_AUTH_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/** A fresh, migrated database with every repository. */
export const storeLayer = (label: string) => {
  const database = Layer.unwrapScoped(Effect.map(freshDatabase(label), (url) => Database.layerFromUrl(url)))
  return Layer.mergeAll(
    Tenants.layer,
    Sessions.layer,
    ApiKeys.layer,
    ShardFences.layer,
    SessionRuntime.layer,
    Messages.layer,
    // No linger: tests on the TestClock would wait for it forever. Its own tests (Outbox.test.ts) give it one.
    Outbox.layerWith({ linger: Duration.zero }),
    Events.layer,
    ClusterMeta.layer,
    AuthState.layer.pipe(Layer.provide(AuthCipher.layerFromKey(TEST_AUTH_KEY)))
  ).pipe(
    Layer.provideMerge(Migrations.layer),
    Layer.provideMerge(database),
    Layer.orDie
  )
}

/** A tenant with a random token hash. */
export const seedTenant = (name = "Acme") =>
  Effect.gen(function*() {
    const tenants = yield* Tenants.Tenants
    return yield* tenants.create({ id: yield* makeTenantId, name, tokenHash: randomBytes(32) })
  })

/** A session of the tenant (a new tenant when none is given). */
export const seedSession = (
  options: { readonly tenantId?: TenantId; readonly city?: string; readonly shard?: number } = {}
) =>
  Effect.gen(function*() {
    const sessions = yield* Sessions.Sessions
    const tenantId = options.tenantId ?? (yield* seedTenant()).id
    const id = yield* makeSessionId
    return yield* sessions.create({
      id,
      tenantId,
      name: "Support",
      city: options.city ?? "jakarta",
      shard: ShardNumber.make(options.shard ?? shardOf(id, 256))
    })
  })
