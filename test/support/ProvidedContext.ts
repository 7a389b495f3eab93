/**
 * What test/support/globalSetup.ts provides to every test file through `inject`.
 */
declare module "vitest" {
  export interface ProvidedContext {
    /** Superuser URL of the run's private Postgres (database `postgres`); make your own with TestDatabase. */
    readonly databaseAdminUrl: string
    /** The run's private nats-server with JetStream. */
    readonly natsUrl: string
  }
}

export {}
