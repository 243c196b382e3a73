import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeader, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import {
  asAuthError,
  authRefusal,
  bearerTokenOf,
  MALFORMED_AUTHORIZATION,
  type Principal,
  type Verifier,
} from '@task-manager/auth'
import {
  BODY_LIMIT_BYTES,
  type FrontHandler,
  type HistogramSeries,
  type ProblemOptions,
  problemType,
  type RequestHistogram,
  requestIdFrom,
  writeProblem,
} from '@task-manager/service-kit'
import type { FastifyBaseLogger } from 'fastify'
import type { Dispatcher } from 'undici'
import type { ClientAddress } from './client-address.js'
import type { GatewayMetrics } from './metrics.js'
import { budgetOf, clientKey, type Decision, type RateLimiter, rateLimitHeaders } from './rate-limit.js'
import {
  classifyFailure,
  type Endpoint,
  isRetryableFailure,
  NoEndpointError,
  type Upstream,
} from './upstream.js'

/**
 * A proxied path prefix and its upstream: the `prefix`/`upstream` pair of @fastify/http-proxy's options (with its
 * `rewritePrefix` equal to the prefix: paths go upstream unchanged).
 */
export interface ProxyRoute {
  prefix: string
  upstream: Upstream
  /** Only the prefix itself (http-proxy's `routes: ['/']`); default the prefix and everything below it. */
  exact?: boolean
}

/** Methods proxied. OPTIONS stays with Fastify and @fastify/cors (preflights are answered at the edge). */
const PROXIED_METHODS = new Set(['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT'])
/** Safe methods: the only ones re-sent after a connection failure. */
const RETRIED_METHODS = new Set(['GET', 'HEAD'])

/** RFC 9110 §7.6.1 hop-by-hop fields, plus the legacy `proxy-connection`. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

/**
 * Identity headers only the platform may set. Services must be able to trust that a request carrying them
 * came from inside, so whatever a client sends under these names is removed at the edge.
 */
const IDENTITY_PREFIXES = [
  'x-user',
  'x-auth',
  'x-internal',
  'x-remote-user',
  'x-forwarded-user',
  'x-subject',
  'x-role',
]
const IDENTITY_EXACT = new Set(['remote-user', 'x-client-verify', 'x-ssl-client-dn'])

function isIdentityHeader(name: string): boolean {
  if (name.charCodeAt(0) !== 120 /* x */ && name !== 'remote-user') return false
  if (IDENTITY_EXACT.has(name)) return true
  for (const prefix of IDENTITY_PREFIXES) if (name.startsWith(prefix)) return true
  return false
}

/** Names listed in a Connection header (hop-by-hop by declaration), unless it only says keep-alive/close. */
function connectionListed(connection: unknown): Set<string> | undefined {
  if (typeof connection !== 'string') return undefined
  const value = connection.toLowerCase()
  if (value === 'keep-alive' || value === 'close') return undefined
  return new Set(value.split(',').map((token) => token.trim()))
}

/** Proxied routes anyone may call: registration, login and the public keys. */
const PUBLIC_ROUTES = new Set([
  'POST /users',
  'POST /auth/token',
  'GET /.well-known/jwks.json',
  'HEAD /.well-known/jwks.json',
])

function isPublicRoute(method: string, url: string): boolean {
  const query = url.indexOf('?')
  let path = query === -1 ? url : url.slice(0, query)
  if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1)
  return PUBLIC_ROUTES.has(`${method} ${path}`)
}

/** CORS grants on proxied answers, for the origins @fastify/cors is configured with (it answers preflights). */
export class CorsPolicy {
  private readonly any: boolean
  private readonly allowed: Set<string>
  private readonly exposed: string

  constructor(origins: string[], exposedHeaders: string[]) {
    this.any = origins.includes('*')
    this.allowed = new Set(origins)
    this.exposed = exposedHeaders.join(', ')
  }

  apply(origin: string | undefined, out: OutgoingHttpHeader[]): void {
    if (this.any) {
      out.push('access-control-allow-origin', '*', 'access-control-expose-headers', this.exposed)
      return
    }
    // The answer depends on Origin: caches must keep one copy per origin.
    out.push('vary', 'Origin')
    if (origin !== undefined && this.allowed.has(origin)) {
      out.push('access-control-allow-origin', origin, 'access-control-expose-headers', this.exposed)
    }
  }
}

export interface EdgeProxyOptions {
  routes: ProxyRoute[]
  metrics: GatewayMetrics
  /** The kit's request histogram: proxied requests are counted there like every other request. */
  requestDuration: RequestHistogram<'method' | 'route' | 'status_code'>
  log: FastifyBaseLogger
  clients: ClientAddress
  cors: CorsPolicy
  /** null when AUTH_MODE is disabled: no token is looked at. */
  verifier: Verifier | null
  /** null when rate limiting is off. */
  limiter: RateLimiter | null
  retryAttempts: number
  responseTimeoutMs: number
  bodyLimit?: number
  /** True once shutdown began: every answer then closes its connection. */
  draining: () => boolean
  /** The kit's load-shedding verdict (event-loop delay over the limit). */
  overloaded: () => boolean
}

/** A matched route: the upstream and the route template it is counted under. */
interface Target {
  upstream: Upstream
  label: string
  /** Its metric series by `method status`: the kit's request histogram and the gateway's upstream one. */
  series: Map<string, [HistogramSeries, HistogramSeries]>
}

interface CompiledRoute {
  prefix: string
  exact: boolean
  whole: Target
  below: Target
}

/**
 * The proxy path of the gateway: every request to a proxied prefix is served here, in front of Fastify's router
 * (the kit's `setFrontHandler`), with every protection the gateway promises — request ids, load shedding, CORS,
 * edge token verification with the verified-token cache, per-client rate limits, the 1 MiB body limit, the
 * circuit breaker, header hygiene and X-Forwarded-*, retries of safe methods within a budget, failures mapped
 * to problem+json naming the service, the kit's request metrics and log line plus the gateway's upstream
 * metrics. Everything else (the gateway's own routes, preflights, 404s) is Fastify's.
 *
 * Why not @fastify/http-proxy, which the gateway used first: measured on this project's benchmark
 * (docs/benchmarks-gateway.md), @fastify/http-proxy with nothing else costs ~64 µs of CPU per proxied request and
 * the gateway built on it ~100 µs, against a budget of 55 µs and a floor of ~42 µs for bare node:http + undici.
 * The cost is in the framework path a proxied request takes (request/reply objects, hook chains, the reply
 * stream pipeline of @fastify/reply-from), not in any one protection, so the protections are written here as
 * direct checks on the raw request and the upstream answer is streamed with undici's `dispatch` straight into
 * the raw response. The route table keeps http-proxy's shape (`prefix`, `upstream`), so going back is a
 * registration change.
 */
export class EdgeProxy {
  private readonly routes: CompiledRoute[]
  readonly bodyLimit: number

  constructor(readonly options: EdgeProxyOptions) {
    this.bodyLimit = options.bodyLimit ?? BODY_LIMIT_BYTES
    this.routes = options.routes.map(({ prefix, upstream, exact = false }) => ({
      prefix,
      exact,
      whole: { upstream, label: prefix, series: new Map() },
      below: { upstream, label: `${prefix}/*`, series: new Map() },
    }))
  }

  /** The route a URL belongs to: the prefix exactly (trailing slash and query allowed) or a path below it. */
  match(url: string): Target | undefined {
    for (const route of this.routes) {
      if (!url.startsWith(route.prefix)) continue
      const at = route.prefix.length
      const next = url.charCodeAt(at)
      if (Number.isNaN(next) || next === 63 /* ? */) return route.whole
      if (next !== 47 /* / */) continue
      const after = url.charCodeAt(at + 1)
      if (Number.isNaN(after) || after === 63) return route.whole
      if (!route.exact) return route.below
    }
    return undefined
  }

  /** The front handler: takes proxied methods on proxied paths, leaves the rest to Fastify. */
  readonly handle: FrontHandler = (req, res) => {
    if (!PROXIED_METHODS.has(req.method as string)) return false
    const target = this.match(req.url as string)
    if (target === undefined) return false
    new Exchange(this, target, req, res).start()
    return true
  }
}

type Step = (principal: Principal | null) => void

const IN_FLIGHT = Symbol('gateway.inFlight')
const AUTH_MEMO = Symbol('gateway.authMemo')

/**
 * A client connection as the proxy sees it: the exchanges in flight on it, and the last Authorization header it
 * sent with its verified caller. A keep-alive client sends the same token on every request, so comparing the
 * header with the previous one (and the verdict's expiry) replaces the token parsing and the cache lookup,
 * which hashes the whole token.
 */
type ClientSocket = Socket & {
  [IN_FLIGHT]?: Set<Exchange>
  [AUTH_MEMO]?: { authorization: string; principal: Principal; until: number }
}

/**
 * Tracks the exchanges in flight on a client connection, so that when it closes their upstream attempts are
 * aborted. One 'close' listener per connection rather than per request: a keep-alive connection carries many
 * requests, and a listener added and removed on every response measurably costs more than a Set.
 */
function watch(socket: ClientSocket, exchange: Exchange): void {
  let inFlight = socket[IN_FLIGHT]
  if (inFlight === undefined) {
    const exchanges = new Set<Exchange>()
    inFlight = exchanges
    socket[IN_FLIGHT] = exchanges
    socket.once('close', () => {
      for (const each of exchanges) each.clientClosed()
    })
  }
  inFlight.add(exchange)
}

function unwatch(socket: ClientSocket, exchange: Exchange): void {
  socket[IN_FLIGHT]?.delete(exchange)
}

/**
 * One proxied request, from arrival to the last byte of the answer. It is also the undici dispatch handler of
 * its attempts, so a request allocates one object rather than a closure per callback.
 */
class Exchange implements Dispatcher.DispatchHandler {
  private readonly started = performance.now()
  private readonly url: string
  private readonly method: string
  private readonly id: string
  private readonly upstream: Upstream
  /** Kept: Node detaches `req.socket` once the connection is gone. */
  private readonly socket: ClientSocket
  /** Headers every answer carries (request id, CORS, rate limits, Connection: close), flat. */
  private readonly extra: OutgoingHttpHeader[]
  private body: IncomingMessage | Buffer | null = null
  private endpoint: Endpoint | undefined
  private controller: Dispatcher.DispatchController | undefined
  private attempt = 0
  private status = 0
  private held: Buffer | undefined
  private responded = false
  private finished = false
  private clientGone = false
  private collecting = false
  private closeConnection = false

  constructor(
    private readonly proxy: EdgeProxy,
    private readonly target: Target,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
  ) {
    this.url = req.url as string
    this.method = req.method as string
    this.upstream = target.upstream
    this.socket = req.socket
    this.id = requestIdFrom(req)
    this.extra = ['x-request-id', this.id]
  }

  start(): void {
    const { options } = this.proxy
    const headers = this.req.headers
    options.cors.apply(headers.origin, this.extra)
    watch(this.socket, this)

    if (options.overloaded()) {
      options.log.warn({ request_id: this.id }, 'shedding load')
      this.answer(503, 'The service is overloaded; retry shortly', {
        type: problemType('overloaded'),
        headers: { 'retry-after': 5 },
      })
      return
    }
    const length = headers['content-length']
    if (length !== undefined && Number(length) > this.proxy.bodyLimit) {
      this.tooLarge()
      return
    }

    const verifier = options.verifier
    if (verifier === null || isPublicRoute(this.method, this.url)) {
      this.limit(null)
      return
    }
    const authorization = headers.authorization
    const socket = this.socket
    const memo = socket[AUTH_MEMO]
    if (memo !== undefined && memo.authorization === authorization && memo.until > Date.now()) {
      this.limit(memo.principal)
      return
    }
    const token = bearerTokenOf(authorization)
    if (token === undefined) {
      this.refuse(undefined)
      return
    }
    if (token === null) {
      this.refuse(MALFORMED_AUTHORIZATION())
      return
    }
    const known = verifier.peekEntry?.(token)
    if (known !== undefined) {
      socket[AUTH_MEMO] = {
        authorization: authorization as string,
        principal: known.principal,
        until: known.until,
      }
      this.limit(known.principal)
      return
    }
    verifier.verify(token).then(this.limit, (error: unknown) => this.refuse(asAuthError(error)))
  }

  private refuse(error: ReturnType<typeof asAuthError> | undefined): void {
    if (error?.reason === 'unavailable') {
      this.proxy.options.log.warn({ err: error.cause, request_id: this.id }, error.message)
    }
    const refusal = authRefusal(error)
    this.answer(refusal.status, refusal.detail, { type: refusal.type, headers: refusal.headers })
  }

  /** Counts the request against the caller's budget: the token's subject, else the client address. */
  private readonly limit: Step = (principal) => {
    const limiter = this.proxy.options.limiter
    if (limiter === null) return this.admit()
    const client = clientKey(principal, this.proxy.options.clients, this.req)
    const decision = limiter.take(budgetOf(this.method, this.url), client)
    if (decision instanceof Promise) decision.then(this.limited)
    else this.limited(decision)
  }

  private readonly limited = (decision: Decision): void => {
    rateLimitHeaders(decision, this.extra)
    if (!decision.allowed) {
      this.answer(429, (this.proxy.options.limiter as RateLimiter).refusal(decision), {
        type: problemType('rate-limited'),
      })
      return
    }
    this.admit()
  }

  /** The circuit breaker is asked last, so an admitted half-open probe is always sent. */
  private admit(): void {
    if (this.clientGone) {
      this.done(499)
      return
    }
    const headers = this.req.headers
    if (headers['content-length'] === undefined && headers['transfer-encoding'] !== undefined) {
      this.collect()
      return
    }
    if (headers['content-length'] !== undefined && headers['content-length'] !== '0') this.body = this.req
    this.send()
  }

  /** Reads a body of unknown length (chunked) up to the limit, so an oversized one never reaches a service. */
  private collect(): void {
    const chunks: Buffer[] = []
    let size = 0
    const req = this.req
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > this.proxy.bodyLimit) {
        this.collecting = false
        req.off('data', onData)
        req.off('end', onEnd)
        this.tooLarge()
        return
      }
      chunks.push(chunk)
    }
    const onEnd = () => {
      this.collecting = false
      this.body = Buffer.concat(chunks, size)
      this.send()
    }
    this.collecting = true
    req.on('data', onData)
    req.once('end', onEnd)
  }

  private tooLarge(): void {
    // The unread body must not be taken for the next request on this connection.
    this.closeConnection = true
    this.answer(413, `Request body exceeds ${this.proxy.bodyLimit} bytes`)
  }

  private send(): void {
    const { metrics } = this.proxy.options
    const upstream = this.upstream
    if (this.attempt === 0) {
      if (!upstream.breaker.allow()) {
        metrics.breakerRejections.inc({ upstream: upstream.name })
        this.answer(503, `${upstream.name} is failing; its circuit is open, retry shortly`, {
          type: problemType('circuit-open'),
          headers: { 'retry-after': upstream.breaker.retryAfterSeconds() },
          extensions: { service: upstream.name },
        })
        return
      }
      upstream.retryBudget.recordRequest()
    }
    const endpoint = upstream.pick()
    if (endpoint === undefined) {
      upstream.breaker.failure()
      this.failed(new NoEndpointError(`no endpoint of ${upstream.name} is known`))
      return
    }
    this.endpoint = endpoint
    endpoint.pool.dispatch(
      {
        origin: endpoint.origin,
        path: this.url,
        method: this.method as Dispatcher.HttpMethod,
        headers: this.upstreamHeaders(),
        body: this.body,
      },
      this,
    )
  }

  /** The client's headers minus hop-by-hop and identity ones, plus Host, X-Forwarded-* and the request id. */
  private upstreamHeaders(): IncomingHttpHeaders {
    const { clients } = this.proxy.options
    const req = this.req
    const headers = req.headers
    const listed = connectionListed(headers.connection)
    // A new object rather than deletes from Node's: `delete` turns an object into a slow dictionary.
    const out: IncomingHttpHeaders = {}
    for (const name in headers) {
      if (HOP_BY_HOP.has(name) || isIdentityHeader(name) || listed?.has(name)) continue
      out[name] = headers[name]
    }
    out.host = this.upstream.url.host
    out['x-forwarded-for'] = clients.forwardedFor(req)
    out['x-forwarded-proto'] = clients.protocol(req)
    out['x-forwarded-host'] = clients.host(req)
    out['x-request-id'] = this.id
    if (Buffer.isBuffer(this.body)) out['content-length'] = String(this.body.length)
    return out
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.clientGone) controller.abort(new Error('the client went away'))
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[]>,
  ): void {
    this.responded = true
    this.upstream.succeeded(this.endpoint as Endpoint)
    this.status = statusCode
    const listed = connectionListed(headers.connection)
    const out: OutgoingHttpHeader[] = []
    for (const name in headers) {
      if (HOP_BY_HOP.has(name) || name === 'x-request-id' || listed?.has(name)) continue
      out.push(name, headers[name] as string | string[])
    }
    for (const value of this.extra) out.push(value)
    // Checked when the answer starts, so a request in flight at SIGTERM closes its connection too.
    if (this.proxy.options.draining()) out.push('connection', 'close')
    this.res.writeHead(statusCode, out)
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    // One chunk is held back so that the last one goes out with end(): a small answer is then written to the
    // socket once, headers included.
    const held = this.held
    this.held = chunk
    if (held !== undefined && !this.res.write(held)) {
      controller.pause()
      this.res.once('drain', () => controller.resume())
    }
  }

  onResponseEnd(): void {
    this.res.end(this.held)
    this.held = undefined
    this.done(this.status)
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.finished) return
    const { log } = this.proxy.options
    const upstream = this.upstream
    if (this.responded) {
      // The status line went out already: the client can only learn of the failure by the connection closing.
      log.warn({ err: error, upstream: upstream.name, request_id: this.id }, 'upstream failed mid-response')
      this.res.destroy()
      this.done(this.status)
      return
    }
    upstream.failed(this.endpoint as Endpoint, error)
    if (this.clientGone) {
      this.done(499)
      return
    }
    this.failed(error)
  }

  /** No response came: retry a safe, bodiless request after a connection failure, within the budget; or answer. */
  private failed(error: Error): void {
    const { metrics, retryAttempts } = this.proxy.options
    const upstream = this.upstream
    if (
      RETRIED_METHODS.has(this.method) &&
      this.body !== this.req &&
      isRetryableFailure(error) &&
      this.attempt < retryAttempts &&
      upstream.breaker.state !== 'open' &&
      upstream.retryBudget.tryRetry()
    ) {
      this.attempt += 1
      metrics.retries.inc({ upstream: upstream.name })
      setImmediate(() => this.send())
      return
    }
    const failure = classifyFailure(upstream, error, this.proxy.options.responseTimeoutMs)
    this.proxy.options.log.warn({ err: error, upstream: upstream.name, request_id: this.id }, failure.detail)
    const type =
      failure.status === 504
        ? 'upstream-timeout'
        : failure.status === 502
          ? 'upstream-bad-gateway'
          : 'upstream-unavailable'
    this.answer(failure.status, failure.detail, {
      type: problemType(type),
      headers: failure.retryAfter ? { 'retry-after': failure.retryAfter } : {},
      extensions: { service: upstream.name },
    })
  }

  /** An answer of the gateway's own, as problem+json with the headers every answer carries. */
  private answer(status: number, detail: string, options: ProblemOptions = {}): void {
    if (this.clientGone) {
      this.done(499)
      return
    }
    if (this.closeConnection || this.proxy.options.draining()) this.extra.push('connection', 'close')
    writeProblem(this.res, this.url, status, detail, options, this.extra)
    this.done(status)
  }

  /** The client's connection closed. */
  clientClosed(): void {
    if (this.finished) return
    // The client went away before its answer was complete: stop the upstream attempt too.
    this.clientGone = true
    this.controller?.abort(new Error('the client went away'))
    // Nothing else will end a request still reading its body.
    if (this.collecting) this.done(499)
  }

  /** The kit's request metric and log line, and the gateway's upstream metric. */
  private done(status: number): void {
    if (this.finished) return
    this.finished = true
    unwatch(this.socket, this)
    const { options } = this.proxy
    const seconds = (performance.now() - this.started) / 1000
    const target = this.target
    const key = `${this.method} ${status}`
    let series = target.series.get(key)
    if (series === undefined) {
      const code = String(status)
      series = [
        options.requestDuration.series({ method: this.method, route: target.label, status_code: code }),
        options.metrics.upstreamDuration.series({
          upstream: this.upstream.name,
          route: target.label,
          method: this.method,
          status_code: code,
        }),
      ]
      target.series.set(key, series)
    }
    series[0].observe(seconds)
    series[1].observe(seconds)
    if ((options.log as unknown as { isLevelEnabled(level: string): boolean }).isLevelEnabled('info')) {
      options.log.info(
        {
          request_id: this.id,
          method: this.method,
          url: this.url,
          status,
          duration_ms: Math.round(seconds * 100_000) / 100,
        },
        'request completed',
      )
    }
  }
}
