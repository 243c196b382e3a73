import { lookup, Resolver } from 'node:dns/promises'
import { isIP } from 'node:net'
import { type Dispatcher, Pool } from 'undici'
import { type BreakerState, CircuitBreaker } from './breaker.js'

export interface UpstreamOptions {
  /** Service name, e.g. `task-service`: names it in errors, logs and metric labels. */
  name: string
  /** Base URL from configuration, e.g. `http://task-service.default.svc.cluster.local:8003`. */
  url: string
  discovery: 'static' | 'dns'
  /** Resolvers (`ip[:port]`) for dns mode; empty = the system resolver. */
  dnsServers: string[]
  dnsRefreshMs: number
  ejectAfterFailures: number
  ejectForMs: number
  connectTimeoutMs: number
  responseTimeoutMs: number
  connections: number
  breakerFailureThreshold: number
  breakerResetMs: number
  retryBudgetRatio: number
  retryBudgetMinPerSecond: number
  onBreakerStateChange?: (upstream: string, state: BreakerState) => void
  log?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void }
}

/** One address behind an upstream (a pod in dns mode) with its own keep-alive pool. */
export class Endpoint {
  consecutiveFailures = 0
  ejectedUntil = 0

  constructor(
    readonly origin: string,
    readonly pool: Pool,
  ) {}
}

/** Errors that mean "the request never got an answer from this endpoint because of the connection". */
const CONNECTION_FAILURE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'ETIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
])
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

/**
 * Failures after which a safe request may be sent again: the connection failed before any response came.
 * Timeouts are not among them: the first attempt may still be running upstream.
 */
const RETRYABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_CLOSED',
  'GW_NO_ENDPOINT',
])

export function isRetryableFailure(error: unknown): boolean {
  return RETRYABLE_CODES.has((error as { code?: string })?.code ?? '')
}

export class NoEndpointError extends Error {
  readonly code = 'GW_NO_ENDPOINT'
}

/**
 * Retries allowed per upstream: at most `ratio` of the requests of the current second plus a small floor, so
 * retries can never multiply the load on a struggling service (a retry storm).
 */
export class RetryBudget {
  private windowStart = 0
  private requests = 0
  private retries = 0

  constructor(
    private readonly ratio: number,
    private readonly minPerSecond: number,
  ) {}

  private roll(now: number): void {
    if (now - this.windowStart >= 1000) {
      this.windowStart = now
      this.requests = 0
      this.retries = 0
    }
  }

  recordRequest(now = Date.now()): void {
    this.roll(now)
    this.requests += 1
  }

  tryRetry(now = Date.now()): boolean {
    this.roll(now)
    if (this.retries >= this.minPerSecond + this.ratio * this.requests) return false
    this.retries += 1
    return true
  }
}

/**
 * An upstream service: where its requests go and how healthy it is.
 *
 * Every attempt of the proxy (retries included) and every health check picks an endpoint here:
 * - static mode: one endpoint, the configured URL (a ClusterIP Service or a fixed address balances);
 * - dns mode: every A record of the URL's host is an endpoint (a headless Service's pods), requests go
 *   round-robin across the endpoints not ejected, the name is re-resolved every `dnsRefreshMs`, and an endpoint
 *   failing `ejectAfterFailures` times in a row rests for `ejectForMs`. Keep-alive sockets are per endpoint, so
 *   long-lived connections no longer pin all load to one pod.
 * The circuit breaker counts the same outcomes for the upstream as a whole.
 */
export class Upstream {
  readonly name: string
  readonly url: URL
  readonly breaker: CircuitBreaker
  readonly retryBudget: RetryBudget
  endpoints: Endpoint[] = []
  private next = 0
  private refreshTimer: NodeJS.Timeout | undefined
  private readonly resolver: Resolver | undefined
  private closed = false

  constructor(private readonly options: UpstreamOptions) {
    this.name = options.name
    this.url = new URL(options.url)
    this.breaker = new CircuitBreaker({
      failureThreshold: options.breakerFailureThreshold,
      resetMs: options.breakerResetMs,
      onStateChange: (state) => {
        options.log?.warn({ upstream: this.name, state }, `circuit of ${this.name} is now ${state}`)
        options.onBreakerStateChange?.(this.name, state)
      },
    })
    this.retryBudget = new RetryBudget(options.retryBudgetRatio, options.retryBudgetMinPerSecond)
    if (options.discovery === 'static' || isIP(this.hostname) !== 0) {
      this.endpoints = [this.endpoint(this.url.origin)]
    } else if (options.dnsServers.length > 0) {
      this.resolver = new Resolver({ timeout: 1000, tries: 2 })
      this.resolver.setServers(options.dnsServers)
    }
  }

  get dynamic(): boolean {
    return this.options.discovery === 'dns' && isIP(this.hostname) === 0
  }

  private get hostname(): string {
    return this.url.hostname.replace(/^\[|\]$/g, '')
  }

  private get port(): string {
    return this.url.port || (this.url.protocol === 'https:' ? '443' : '80')
  }

  private endpoint(origin: string): Endpoint {
    return new Endpoint(
      origin,
      new Pool(origin, {
        connections: this.options.connections,
        pipelining: 1,
        connect: { timeout: this.options.connectTimeoutMs },
        headersTimeout: this.options.responseTimeoutMs,
        bodyTimeout: this.options.responseTimeoutMs,
        keepAliveTimeout: 4000,
      }),
    )
  }

  /** Resolves the endpoints once, then keeps them fresh (dns mode only). */
  async start(): Promise<void> {
    if (!this.dynamic) return
    await this.refresh()
    const tick = () => {
      this.refreshTimer = setTimeout(async () => {
        await this.refresh()
        if (!this.closed) tick()
      }, this.options.dnsRefreshMs)
      this.refreshTimer.unref()
    }
    tick()
  }

  private async resolve(): Promise<string[]> {
    if (this.resolver) return this.resolver.resolve4(this.hostname)
    // getaddrinfo honours the pod's resolv.conf search list, so a short Service name works too.
    const records = await lookup(this.hostname, { all: true, family: 4 })
    return records.map((record) => record.address)
  }

  /** One DNS round; a failed lookup keeps the last known endpoints (stale beats none). */
  async refresh(): Promise<void> {
    let addresses: string[]
    try {
      addresses = [...new Set(await this.resolve())].sort()
    } catch (error) {
      this.options.log?.warn({ upstream: this.name, err: error }, `DNS lookup of ${this.hostname} failed`)
      return
    }
    if (this.closed) return
    if (addresses.length === 0) {
      this.options.log?.warn(
        { upstream: this.name },
        `${this.hostname} resolved to no address; keeping the last known`,
      )
      return
    }
    const protocol = this.url.protocol
    const wanted = new Map(addresses.map((address) => [`${protocol}//${address}:${this.port}`, address]))
    const kept = this.endpoints.filter((endpoint) => wanted.has(endpoint.origin))
    for (const endpoint of this.endpoints) {
      if (!wanted.has(endpoint.origin)) void endpoint.pool.close().catch(() => {})
    }
    const known = new Set(kept.map((endpoint) => endpoint.origin))
    for (const origin of wanted.keys()) if (!known.has(origin)) kept.push(this.endpoint(origin))
    if (kept.length !== this.endpoints.length || kept.some((endpoint, i) => endpoint !== this.endpoints[i])) {
      this.options.log?.info(
        { upstream: this.name, endpoints: kept.map((endpoint) => endpoint.origin) },
        `endpoints of ${this.name} changed`,
      )
    }
    this.endpoints = kept
  }

  /** Round-robin over endpoints not ejected; when all are ejected, over all of them (better than nothing). */
  pick(now = Date.now()): Endpoint | undefined {
    const endpoints = this.endpoints
    const count = endpoints.length
    if (count === 0) return undefined
    for (let i = 0; i < count; i++) {
      const endpoint = endpoints[(this.next + i) % count] as Endpoint
      if (endpoint.ejectedUntil <= now) {
        this.next = (this.next + i + 1) % count
        return endpoint
      }
    }
    const endpoint = endpoints[this.next % count] as Endpoint
    this.next = (this.next + 1) % count
    return endpoint
  }

  ejectedCount(now = Date.now()): number {
    let ejected = 0
    for (const endpoint of this.endpoints) if (endpoint.ejectedUntil > now) ejected += 1
    return ejected
  }

  private recordFailure(endpoint: Endpoint): void {
    this.breaker.failure()
    endpoint.consecutiveFailures += 1
    if (this.dynamic && endpoint.consecutiveFailures >= this.options.ejectAfterFailures) {
      endpoint.consecutiveFailures = 0
      endpoint.ejectedUntil = Date.now() + this.options.ejectForMs
      this.options.log?.warn(
        { upstream: this.name, endpoint: endpoint.origin, for_ms: this.options.ejectForMs },
        `ejected ${endpoint.origin} of ${this.name}`,
      )
    }
  }

  /** An attempt on `endpoint` got a response (any status): the endpoint and the upstream are answering. */
  succeeded(endpoint: Endpoint): void {
    endpoint.consecutiveFailures = 0
    this.breaker.success()
  }

  /**
   * An attempt on `endpoint` failed before any response. Connection failures and timeouts count against the
   * endpoint (ejection) and the circuit; anything else (the client went away) says nothing about the upstream.
   */
  failed(endpoint: Endpoint, error: unknown): void {
    const code = (error as { code?: string })?.code ?? ''
    if (CONNECTION_FAILURE_CODES.has(code) || TIMEOUT_CODES.has(code)) this.recordFailure(endpoint)
    else this.breaker.release()
  }

  /** One request with a buffered answer (the health checks), through an endpoint, outcome recorded. */
  request(
    options: Omit<Dispatcher.RequestOptions, 'origin'>,
    callback: (err: Error | null, data?: Dispatcher.ResponseData) => void,
  ) {
    const endpoint = this.pick()
    if (!endpoint) {
      this.breaker.failure()
      callback(new NoEndpointError(`no endpoint of ${this.name} is known`))
      return
    }
    endpoint.pool.request({ ...options, origin: endpoint.origin }, (err, data) => {
      if (err) {
        this.failed(endpoint, err)
        callback(err)
        return
      }
      this.succeeded(endpoint)
      callback(null, data)
    })
  }

  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.refreshTimer)
    await Promise.all(this.endpoints.map((endpoint) => endpoint.pool.close().catch(() => {})))
  }
}

export type ProxyFailure = { status: 502 | 503 | 504; detail: string; retryAfter?: number }

/** Maps an attempt's error (the cause when wrapped) to the client-facing answer. */
export function classifyFailure(upstream: Upstream, error: unknown, responseTimeoutMs: number): ProxyFailure {
  const cause = (error as { cause?: unknown })?.cause ?? error
  const code = (cause as { code?: string })?.code ?? (error as { code?: string })?.code ?? ''
  if (TIMEOUT_CODES.has(code)) {
    return { status: 504, detail: `${upstream.name} did not answer within ${responseTimeoutMs} ms` }
  }
  if (code === 'UND_ERR_CONNECT_TIMEOUT') {
    return { status: 504, detail: `Connecting to ${upstream.name} timed out` }
  }
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') {
    return { status: 502, detail: `${upstream.name} closed the connection before answering` }
  }
  return { status: 503, detail: `${upstream.name} is unavailable; retry shortly`, retryAfter: 1 }
}
