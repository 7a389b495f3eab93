/**
 * Small helpers for calling a running gateway over plain HTTP, the way a tenant's code would.
 */
export interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly body: unknown
}

export const call = async (
  base: string,
  method: string,
  path: string,
  options: {
    readonly bearer?: string
    readonly apiKey?: string
    readonly json?: unknown
    readonly raw?: string
    readonly headers?: Readonly<Record<string, string>>
  } = {}
): Promise<Reply> => {
  const headers: Record<string, string> = { ...options.headers }
  if (options.bearer !== undefined) headers.authorization = `Bearer ${options.bearer}`
  if (options.apiKey !== undefined) headers["x-api-key"] = options.apiKey
  let body: string | undefined
  if (options.json !== undefined || options.raw !== undefined) {
    headers["content-type"] = "application/json"
    body = options.raw ?? JSON.stringify(options.json)
  }
  const response = await fetch(`${base}${path}`, { method, headers, ...(body === undefined ? {} : { body }) })
  const text = await response.text()
  let parsed: unknown = text
  try {
    parsed = text === "" ? null : JSON.parse(text)
  } catch {
    // Not JSON: keep the text so the assertion shows it.
  }
  return { status: response.status, headers: response.headers, body: parsed }
}

/** Reads a nested field of a JSON reply without casts at every call site. */
export const field = (value: unknown, ...path: ReadonlyArray<string | number>): unknown => {
  let current: unknown = value
  for (const key of path) {
    if (current === null || typeof current !== "object") return undefined
    current = (current as Record<string | number, unknown>)[key]
  }
  return current
}

export const text = (value: unknown, ...path: ReadonlyArray<string | number>): string => {
  const found = field(value, ...path)
  if (typeof found !== "string") throw new Error(`expected a string at ${path.join(".")}, got ${JSON.stringify(value)}`)
  return found
}

/** One session as the tenant's list shows it. */
export interface ListedSession {
  readonly id: string
  readonly status: string
  readonly reason: string | null
  /** Milliseconds since the epoch. */
  readonly connectedAt: number | null
}

/** Every session of the tenant, page by page, as the tenant lists them. */
export const listSessions = async (gateway: string, token: string): Promise<Array<ListedSession>> => {
  const all: Array<ListedSession> = []
  let cursor: string | null = null
  do {
    const path: string = `/sessions?limit=500${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`
    const reply = await call(gateway, "GET", path, { bearer: token })
    if (reply.status !== 200) throw new Error(`GET ${path}: ${reply.status} ${JSON.stringify(reply.body)}`)
    const page = field(reply.body, "sessions")
    if (!Array.isArray(page)) throw new Error(`GET ${path}: no sessions in ${JSON.stringify(reply.body)}`)
    for (const entry of page) {
      const connectedAt = field(entry, "connectedAt")
      const reason = field(entry, "reason")
      all.push({
        id: text(entry, "id"),
        status: text(entry, "status"),
        reason: typeof reason === "string" ? reason : null,
        connectedAt: typeof connectedAt === "string" ? Date.parse(connectedAt) : null
      })
    }
    const next = field(reply.body, "nextCursor")
    cursor = typeof next === "string" ? next : null
  } while (cursor !== null)
  return all
}

/** Creates a tenant with the cluster's admin token; its id and token (shown once by the API). */
export const createTenant = async (
  cluster: { readonly gatewayUrl: string; readonly adminToken: string },
  name: string
): Promise<{ readonly id: string; readonly token: string }> => {
  const reply = await call(cluster.gatewayUrl, "POST", "/tenants", { bearer: cluster.adminToken, json: { name } })
  if (reply.status !== 201) throw new Error(`tenant ${name}: ${reply.status} ${JSON.stringify(reply.body)}`)
  return { id: text(reply.body, "tenant", "id"), token: text(reply.body, "token") }
}
