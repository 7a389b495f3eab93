/**
 * The baseline's far end: a process that answers every request on `bench.echo` with a reply the size of a
 * status document, doing nothing else. It stands in for "a node that answers instantly".
 */
import { connect } from "@nats-io/transport-node"

const url = process.argv[2] ?? "nats://127.0.0.1:4222"
const reply = new TextEncoder().encode(JSON.stringify({
  _tag: "Success",
  value: {
    sessionId: "sess_00000000000000000000",
    status: "connecting",
    connectedAt: null,
    health: "degraded",
    metrics: { messagesSent: 0, messagesReceived: 0, uptime: 0 }
  }
}))
const nc = await connect({ servers: url })
nc.subscribe("bench.echo", {
  callback: (_error, msg) => {
    msg.respond(reply)
  }
})
await nc.flush()
process.stdout.write("ready\n")
process.on("SIGTERM", () => void nc.drain().then(() => process.exit(0)))
