import { Schema } from "effect"

/** A NATS operation failed; the client's error is kept in `cause`. */
export class NatsError extends Schema.TaggedError<NatsError>()("NatsError", {
  operation: Schema.String,
  cause: Schema.Defect
}) {}

/** A request found nobody subscribed to its subject (the shard has no owner right now). */
export class NoResponders extends Schema.TaggedError<NoResponders>()("NoResponders", {
  subject: Schema.String
}) {}

/** A request was not answered within its timeout. */
export class RequestTimeout extends Schema.TaggedError<RequestTimeout>()("RequestTimeout", {
  subject: Schema.String
}) {}

/** A compare-and-set on a KV key lost: somebody else wrote it first (or the key already exists). */
export class RevisionMismatch extends Schema.TaggedError<RevisionMismatch>()("RevisionMismatch", {
  bucket: Schema.String,
  key: Schema.String
}) {}
