// Prints every event of one tenant, in order, as JSON lines:
//   NATS_URL=nats://127.0.0.1:4222 TENANT_ID=ten_… pnpm exec tsx test/examples/events-subscriber.ts
import { jetstream } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"

const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" })
const js = jetstream(nc)
// An ordered consumer of the tenant's subjects: every event the stream holds, oldest first, then new ones live.
const consumer = await js.consumers.get("WA_EVENTS", { filter_subjects: `wa.evt.${process.env.TENANT_ID}.>` })
for await (const message of await consumer.consume()) {
  const event = message.json<{ id: string; type: string; timestamp: string; data: { sessionId: string } }>()
  console.log(JSON.stringify(event))
}
