/**
 * Control messages on NATS (`wa.ctl.>`) and the operator's view of the cluster. Operators drain a node through
 * the gateway (`POST /admin/nodes/{nodeId}/drain`) or straight over NATS:
 *
 *   nats req wa.ctl.nodes.node-2.drain '{"draining":true}'
 */
import { Schema } from "effect"
import { NodeId } from "./Ids.js"

/**
 * Published by the gateway that revoked a key or deleted a session: every gateway drops its cached key lookups at
 * once (their CREDENTIAL_CACHE_TTL, at most a second, is the guarantee when a message is lost).
 */
export const credentialsRevokedSubject = "wa.ctl.credentials.revoked"

/**
 * Published by a node after it acknowledged a batch of events for webhooks: the consumer's ack floor may have moved,
 * and every node reads it again (a node that reads it only now and then, when nothing is in flight, would otherwise
 * hold back its deliveries until its next read).
 */
export const webhooksAckedSubject = "wa.ctl.webhooks.acked"

/** The subject a node answers drain requests on. */
export const drainSubject = (nodeId: string): string => `wa.ctl.nodes.${nodeId}.drain`

export class DrainRequest extends Schema.Class<DrainRequest>("DrainRequest")({
  /** true: hand every shard to the other nodes and take none; false: take a share again. */
  draining: Schema.Boolean
}) {}

export class NodeDrain extends Schema.Class<NodeDrain>("NodeDrain")({
  nodeId: NodeId,
  draining: Schema.Boolean,
  /** Shards the node still holds; a draining node hands them over a batch per heartbeat. */
  shards: Schema.NonNegativeInt,
  /** Other nodes that can take shards; a draining node with none keeps its shards until one joins. */
  otherNodes: Schema.NonNegativeInt
}) {}

/** A control request the node could not read. */
export class ControlRefused extends Schema.Class<ControlRefused>("ControlRefused")({
  error: Schema.String
}) {}

export const DrainReply = Schema.Union(NodeDrain, ControlRefused)

export class ClusterNodeView extends Schema.Class<ClusterNodeView>("ClusterNodeView")({
  nodeId: NodeId,
  /** When the node process started (its own clock). */
  liveSince: Schema.DateTimeUtc,
  draining: Schema.Boolean,
  version: Schema.String,
  /** Shards whose lease the node holds. */
  shards: Schema.NonNegativeInt,
  /** Session actors the node runs, as of its last heartbeat. */
  sessions: Schema.NonNegativeInt
}) {}

export class ShardOwnerView extends Schema.Class<ShardOwnerView>("ShardOwnerView")({
  shard: Schema.NonNegativeInt,
  /** The node holding the lease, or null while the shard is free. */
  owner: Schema.NullOr(NodeId),
  /** The fencing epoch of the lease (its KV revision at acquisition). */
  epoch: Schema.NullOr(Schema.NonNegativeInt),
  /** The node that should hold it, by rendezvous hashing over the live, non-draining nodes. */
  desiredOwner: Schema.NullOr(NodeId)
}) {}

export class ShardMove extends Schema.Class<ShardMove>("ShardMove")({
  shard: Schema.NonNegativeInt,
  /** The current holder, or null when the shard is free (a node died or just released it). */
  from: Schema.NullOr(NodeId),
  to: NodeId
}) {}

export class ClusterOverview extends Schema.Class<ClusterOverview>("ClusterOverview")({
  nodes: Schema.Array(ClusterNodeView),
  shards: Schema.Array(ShardOwnerView),
  /** Shards not yet held by their desired owner. */
  moves: Schema.Array(ShardMove)
}) {}
