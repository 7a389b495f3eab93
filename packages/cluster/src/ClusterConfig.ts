/**
 * Timings and sizes of the ownership protocol (DESIGN.md "Ownership protocol"). All are config.
 */
import { Config, Context, Duration, Effect, Layer } from "effect"

export interface ClusterConfigShape {
  readonly shards: number
  readonly heartbeat: Duration.Duration
  readonly nodeTtl: Duration.Duration
  readonly leaseTtl: Duration.Duration
  readonly replicas: number
  readonly handoverBatch: number
}

export class ClusterConfig extends Context.Tag("@wacluster/cluster/ClusterConfig")<
  ClusterConfig,
  ClusterConfigShape
>() {
  static readonly config: Config.Config<ClusterConfigShape> = Config.all({
    shards: Config.integer("SHARDS").pipe(
      Config.withDefault(256),
      Config.validate({ message: "SHARDS must be between 1 and 65536", validation: (n) => n >= 1 && n <= 65536 }),
      Config.withDescription("Number of shards; fixed for the life of a cluster")
    ),
    heartbeat: Config.duration("HEARTBEAT").pipe(
      Config.withDefault(Duration.seconds(1)),
      Config.withDescription("How often a node refreshes its membership entry")
    ),
    nodeTtl: Config.duration("NODE_TTL").pipe(
      Config.withDefault(Duration.seconds(5)),
      Config.withDescription("A node whose entry did not change for this long is considered gone")
    ),
    leaseTtl: Config.duration("LEASE_TTL").pipe(
      Config.withDefault(Duration.seconds(6)),
      Config.withDescription("A shard lease not renewed for this long may be taken over")
    ),
    replicas: Config.integer("NATS_KV_REPLICAS").pipe(
      Config.withDefault(1),
      Config.withDescription("Replicas of the KV buckets (3 on a 3-server NATS cluster)")
    ),
    handoverBatch: Config.integer("HANDOVER_BATCH").pipe(
      Config.withDefault(8),
      Config.validate({ message: "HANDOVER_BATCH must be at least 1", validation: (n) => n >= 1 }),
      Config.withDescription("Most shards a node has released and their new owner not yet taken (a join, a drain)")
    )
  }).pipe(
    // A node that vanished from membership loses its shards as soon as their leases have also stood still for two
    // renewals, so it must have fenced itself by then: its last renewal may come up to a heartbeat before its last
    // heartbeat, and it fences 0.6 × LEASE_TTL after that renewal.
    Config.validate({
      message: "NODE_TTL must be longer than 0.6 × LEASE_TTL (a gone node must have stopped its sessions before " +
        "others take them): raise NODE_TTL or lower LEASE_TTL",
      validation: (c) => Duration.toMillis(c.nodeTtl) > 0.6 * Duration.toMillis(c.leaseTtl)
    })
  )

  static readonly layer = Layer.effect(ClusterConfig, ClusterConfig.config)
  static readonly make = (overrides: Partial<ClusterConfigShape> = {}): ClusterConfigShape => ({
    shards: 256,
    heartbeat: Duration.seconds(1),
    nodeTtl: Duration.seconds(5),
    leaseTtl: Duration.seconds(6),
    replicas: 1,
    handoverBatch: 8,
    ...overrides
  })
  static readonly layerWith = (overrides: Partial<ClusterConfigShape>) =>
    Layer.succeed(ClusterConfig, ClusterConfig.make(overrides))
}

/** Monotonic milliseconds from Effect's clock (TestClock in tests); never compared across machines. */
export const monotonicMillis = Effect.map(
  Effect.clockWith((clock) => clock.currentTimeNanos),
  (n) => Number(n / 1_000_000n)
)
