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
    )
  })

  static readonly layer = Layer.effect(ClusterConfig, ClusterConfig.config)
  static readonly make = (overrides: Partial<ClusterConfigShape> = {}): ClusterConfigShape => ({
    shards: 256,
    heartbeat: Duration.seconds(1),
    nodeTtl: Duration.seconds(5),
    leaseTtl: Duration.seconds(6),
    replicas: 1,
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
