/**
 * The send benchmark's bare pipeline: the least a send can cost on this machine along the cluster's path, to set the
 * cluster's steady phase beside. The same requests from the same load generator go to a plain node:http server (the
 * front), which sends each as a NATS request on its session's shard subject to one of a few plain responders (the
 * backs, one a node), which queue its text in a copy of `messages` by group commit (one INSERT for the texts that
 * wait, lingering 3 ms when fewer than 8 do, as the Outbox does) and answer the message's id, status and creation
 * time. Nothing else: no key check, no fence, no actor, no rate limit, no schema, no logs.
 *
 *   node --import tsx bare.ts front <nats url> <port, 0 for any>
 *   node --import tsx bare.ts back <nats url> <database url> <table> <index> <count>
 *
 * Each prints "ready" once it serves (the front "ready <port>").
 */
import { connect } from "@nats-io/transport-node"
import { shardOf } from "@wacluster/domain/Shard"
import { randomUUID } from "node:crypto"
import { createServer } from "node:http"
import pg from "pg"

/** As many subjects as the cluster has shards (its default), each request's found as the gateway finds it. */
const SHARDS = 64
const LINGER_MS = 3
const LINGER_BELOW = 8

const subjectOf = (shard: number) => `bench.bare.${shard}`

const front = async (natsUrl: string, port: number) => {
  const nats = await connect({ servers: natsUrl })
  const encoder = new TextEncoder()
  const server = createServer((request, response) => {
    const path = /^\/sessions\/([^/]+)\/messages$/.exec(request.url ?? "")
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      const body: unknown = (() => {
        try {
          return JSON.parse(Buffer.concat(chunks).toString("utf8"))
        } catch {
          return undefined
        }
      })()
      const sessionId = path?.[1]
      if (
        sessionId === undefined || typeof body !== "object" || body === null || !("to" in body) || !("text" in body)
      ) {
        response.writeHead(400).end()
        return
      }
      const command = JSON.stringify({ sessionId, to: body.to, text: body.text })
      nats.request(subjectOf(shardOf(sessionId, SHARDS)), encoder.encode(command), { timeout: 5_000 }).then(
        (answer) => response.writeHead(202, { "content-type": "application/json" }).end(answer.data),
        () => response.writeHead(503).end()
      )
    })
  })
  server.listen(port, "127.0.0.1", () => {
    const address = server.address()
    process.stdout.write(`ready ${typeof address === "object" && address !== null ? address.port : port}\n`)
  })
}

interface Waiting {
  readonly sessionId: string
  readonly to: string
  readonly text: string
  readonly respond: (answer: string) => void
}

const back = async (natsUrl: string, databaseUrl: string, table: string, index: number, count: number) => {
  const nats = await connect({ servers: natsUrl })
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  const insert = {
    name: "bare_insert",
    text: `INSERT INTO ${table} (id, session_id, direction, remote_jid, body, status)
      SELECT x.id, x.session_id, 'outbound', x.remote_jid, jsonb_build_object('text', x.text), 'queued'
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS x (id, session_id, remote_jid, text, position)
      ORDER BY x.position
      RETURNING id, created_at`
  }
  let waiting: Array<Waiting> = []
  let writing = false
  const write = async (): Promise<void> => {
    if (writing || waiting.length === 0) return
    writing = true
    if (waiting.length < LINGER_BELOW) await new Promise((resolve) => setTimeout(resolve, LINGER_MS))
    const batch = waiting
    waiting = []
    const ids = batch.map(() => `msg_${randomUUID().replace(/-/g, "").slice(0, 20)}`)
    try {
      const { rows } = await client.query<{ id: string; created_at: Date }>({
        ...insert,
        values: [ids, batch.map((item) => item.sessionId), batch.map((item) => item.to), batch.map((item) => item.text)]
      })
      rows.forEach((row, i) =>
        batch[i]?.respond(
          JSON.stringify({ messageId: row.id, status: "queued", createdAt: row.created_at.toISOString() })
        )
      )
    } catch (error) {
      process.stderr.write(`bare back: ${String(error)}\n`)
    }
    writing = false
    return write()
  }
  const decoder = new TextDecoder()
  const encoder = new TextEncoder()
  for (let shard = index; shard < SHARDS; shard += count) {
    nats.subscribe(subjectOf(shard), {
      callback: (_error, message) => {
        const { sessionId, text, to } = JSON.parse(decoder.decode(message.data)) as Omit<Waiting, "respond">
        waiting.push({ sessionId, to, text, respond: (answer) => message.respond(encoder.encode(answer)) })
        void write()
      }
    })
  }
  await nats.flush()
  process.stdout.write("ready\n")
}

const [role, ...args] = process.argv.slice(2)
if (role === "front") await front(args[0] ?? "", Number(args[1]))
else if (role === "back") await back(args[0] ?? "", args[1] ?? "", args[2] ?? "", Number(args[3]), Number(args[4]))
else throw new Error(`bare.ts: unknown role ${role}`)
