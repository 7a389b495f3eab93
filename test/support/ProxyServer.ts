/**
 * A real SOCKS5 or HTTP CONNECT proxy in its own process (proxy-server-main.ts), for tests of the proxy path:
 * it tunnels to any target, remembers every username/password it was offered, and can refuse usernames matching
 * a pattern. `stop` kills the process, so its port refuses connections like a dead proxy; `start` brings it back
 * on the same port. Whatever is still running is stopped when the scope closes.
 */
import * as FreePort from "@wacluster/infra/FreePort"
import * as Service from "@wacluster/infra/Service"
import { Effect, ExecutionStrategy, Exit, Option, Ref, Schema, Scope } from "effect"

export type ProxyKind = "socks5" | "http"

export interface ProxyServerOptions {
  readonly kind: ProxyKind
  /** A free port when omitted. */
  readonly port?: number | undefined
  /** A regular expression: usernames matching it are refused (SOCKS auth failure / 407). */
  readonly reject?: string | undefined
}

export const Credential = Schema.Struct({ username: Schema.String, password: Schema.String })
export type Credential = typeof Credential.Type

export interface ProxyServerHandle {
  readonly kind: ProxyKind
  readonly port: number
  /** `socks5://127.0.0.1:<port>` or `http://127.0.0.1:<port>`, without credentials. */
  readonly url: string
  /** Every credential offered so far, in order, across restarts. */
  readonly seen: Effect.Effect<Array<Credential>>
  /** Kills the process; connections to `port` are refused until `start`. */
  readonly stop: Effect.Effect<void>
  /** Runs the proxy again on the same port (nothing happens if it runs). */
  readonly start: Effect.Effect<void>
}

const decodeSeen = Schema.decodeUnknown(Schema.parseJson(Schema.Array(Credential)))

const fetchSeen = (controlPort: number) =>
  Effect.tryPromise((signal) =>
    fetch(`http://127.0.0.1:${controlPort}/seen`, { signal }).then((response) => response.text())
  ).pipe(Effect.flatMap(decodeSeen), Effect.timeout("5 seconds"))

export const start = (options: ProxyServerOptions): Effect.Effect<ProxyServerHandle, never, Scope.Scope> =>
  Effect.gen(function*() {
    const port = options.port ?? (yield* FreePort.freePort)
    const controlPort = yield* FreePort.freePort
    const outer = yield* Effect.scope
    const running = yield* Ref.make(Option.none<Scope.CloseableScope>())
    // What earlier processes saw: each process only knows its own credentials.
    const history = yield* Ref.make<ReadonlyArray<Credential>>([])

    const launch = Effect.gen(function*() {
      const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
      yield* Service.start({
        name: `${options.kind}-proxy`,
        entry: "test/support/proxy-server-main.ts",
        env: {
          PROXY_KIND: options.kind,
          PROXY_PORT: String(port),
          PROXY_CONTROL_PORT: String(controlPort),
          PROXY_REJECT: options.reject ?? ""
        },
        healthUrl: `http://127.0.0.1:${controlPort}/health`,
        startTimeout: "20 seconds",
        stopGrace: "2 seconds"
      }).pipe(
        Scope.extend(scope),
        Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause))),
        Effect.orDie
      )
      yield* Ref.set(running, Option.some(scope))
    })

    const stop = Effect.gen(function*() {
      const current = yield* Ref.getAndSet(running, Option.none())
      if (Option.isNone(current)) return
      // A process that already died took its list with it; stopping must still work.
      const lastSeen = yield* fetchSeen(controlPort).pipe(Effect.orElseSucceed((): ReadonlyArray<Credential> => []))
      yield* Ref.update(history, (earlier) => [...earlier, ...lastSeen])
      yield* Scope.close(current.value, Exit.void)
    }).pipe(Effect.uninterruptible, Effect.withSpan("ProxyServer.stop"))

    const restart = Effect.gen(function*() {
      if (Option.isSome(yield* Ref.get(running))) return
      yield* launch
    }).pipe(Effect.withSpan("ProxyServer.start"))

    const seen = Effect.gen(function*() {
      const earlier = yield* Ref.get(history)
      const current = Option.isSome(yield* Ref.get(running)) ? yield* Effect.orDie(fetchSeen(controlPort)) : []
      return [...earlier, ...current]
    })

    yield* launch
    const handle: ProxyServerHandle = {
      kind: options.kind,
      port,
      url: `${options.kind}://127.0.0.1:${port}`,
      seen,
      stop,
      start: restart
    }
    return handle
  }).pipe(Effect.withSpan("ProxyServer.start"))
