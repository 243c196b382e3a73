import { AsyncLocalStorage } from 'node:async_hooks'
import { lookup, Resolver } from 'node:dns/promises'
import { isIP } from 'node:net'
import { Circuit, type CircuitState } from '@task-manager/service-kit'
import type { Gauge } from 'prom-client'
import { Agent, type Dispatcher } from 'undici'
import { isServiceFailure, NoEndpointError, RetryBudget } from './failures.js'

/**
 * Route classes have their own timeout and circuit: `login` (login and registration, slow by design: they hash
 * a password) and `default` (everything else), so a burst of slow logins cannot open the circuit of
 * `GET /users/me`.
 */
export type RouteClass = 'default' | 'login'
export const ROUTE_CLASSES: readonly RouteClass[] = ['default', 'login']

export interface BackendOptions {
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
  /** Response timeout per route class (undici's headers and body timeouts). */
  timeoutMs: Record<RouteClass, number>
  connections: number
  breakerVolumeThreshold: number
  breakerErrorPercentage: number
  breakerResetMs: number
  retryBudgetRatio: number
  retryBudgetMinPerSecond: number
  /** `gateway_circuit_breaker_state{upstream, route_class}`. */
  circuitGauge?: Gauge<string>
  log?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void }
}

/** One address behind a service (a pod in dns mode). */
export interface Endpoint {
  readonly origin: string
  consecutiveFailures: number
  ejectedUntil: number
}

/** What the proxy knows of the request an attempt belongs to (reply-from hands the dispatcher only options). */
export interface AttemptContext {
  routeClass: RouteClass
  /** Aborted when the client goes away: the attempt in flight is cancelled too. */
  signal: AbortSignal
}
export const attemptContext = new AsyncLocalStorage<AttemptContext>()

type Callback = (error: Error | null, data?: Dispatcher.ResponseData) => void

/**
 * A service behind the gateway: where its requests go and how healthy it is. It is the undici dispatcher
 * @fastify/reply-from sends every attempt through (anything with `request(options, callback)`), so discovery,
 * balancing, ejection and the circuits sit under the library's proxying rather than beside it.
 *
 * - Connections: one undici `Agent`, which keeps a keep-alive pool per endpoint origin and drops pools that
 *   go idle; the endpoints themselves are chosen here.
 * - static mode: one endpoint, the configured URL (a ClusterIP Service or a fixed address balances).
 * - dns mode: every A record of the URL's host is an endpoint (a headless Service's pods), attempts go
 *   round-robin across the endpoints not ejected, the name is re-resolved every `dnsRefreshMs`, and an endpoint
 *   failing `ejectAfterFailures` times in a row rests for `ejectForMs`. undici's `BalancedPool` balances by
 *   weights it lowers on errors, which neither ejects a failing pod for a known time nor lets the metrics say
 *   how many are out, hence this small list.
 * - circuits: one opossum circuit (the kit's `Circuit`) per route class. Only failures without a response
 *   (connection errors, timeouts) count; any answer, 5xx included, means the service is reachable.
 */
export class ServiceBackend {
  readonly name: string
  readonly url: URL
  readonly retryBudget: RetryBudget
  readonly circuits: Record<
    RouteClass,
    Circuit<[Dispatcher.RequestOptions, AbortSignal | undefined], Dispatcher.ResponseData>
  >
  endpoints: Endpoint[] = []
  private readonly agent: Agent
  /** Health checks have connections of their own, so they answer however busy the proxied traffic keeps the pool. */
  private readonly healthAgent: Agent
  private next = 0
  private refreshTimer: NodeJS.Timeout | undefined
  private readonly resolver: Resolver | undefined
  private closed = false

  constructor(private readonly options: BackendOptions) {
    this.name = options.name
    this.url = new URL(options.url)
    this.agent = new Agent({
      connections: options.connections,
      pipelining: 1,
      connect: { timeout: options.connectTimeoutMs },
      headersTimeout: options.timeoutMs.default,
      bodyTimeout: options.timeoutMs.default,
      keepAliveTimeout: 4000,
    })
    this.healthAgent = new Agent({ connections: 2, connect: { timeout: options.connectTimeoutMs } })
    this.retryBudget = new RetryBudget(options.retryBudgetRatio, options.retryBudgetMinPerSecond)
    const circuit = (routeClass: RouteClass) =>
      new Circuit(
        (request: Dispatcher.RequestOptions, signal: AbortSignal | undefined) => this.send(request, signal),
        {
          resetTimeoutMs: options.breakerResetMs,
          errorThresholdPercentage: options.breakerErrorPercentage,
          volumeThreshold: options.breakerVolumeThreshold,
          isNotFailure: (error) => !isServiceFailure(error),
          gauge: options.circuitGauge && {
            metric: options.circuitGauge,
            labels: { upstream: this.name, route_class: routeClass },
          },
          onStateChange: (state: CircuitState) =>
            options.log?.warn(
              { upstream: this.name, route_class: routeClass, state },
              `circuit of ${this.name} (${routeClass} routes) is now ${state}`,
            ),
        },
      )
    this.circuits = { default: circuit('default'), login: circuit('login') }
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
    return { origin, consecutiveFailures: 0, ejectedUntil: 0 }
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
    const wanted = new Set(addresses.map((address) => `${protocol}//${address}:${this.port}`))
    const kept = this.endpoints.filter((endpoint) => wanted.has(endpoint.origin))
    const known = new Set(kept.map((endpoint) => endpoint.origin))
    for (const origin of wanted) if (!known.has(origin)) kept.push(this.endpoint(origin))
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

  private failed(endpoint: Endpoint, error: unknown): void {
    if (!isServiceFailure(error)) return
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

  /** One attempt on the next endpoint, its outcome recorded for ejection. */
  private send(
    request: Dispatcher.RequestOptions,
    signal: AbortSignal | undefined,
  ): Promise<Dispatcher.ResponseData> {
    const endpoint = this.pick()
    if (endpoint === undefined)
      return Promise.reject(new NoEndpointError(`no endpoint of ${this.name} is known`))
    return new Promise((resolve, reject) => {
      this.agent.request({ ...request, origin: endpoint.origin, signal }, (error, data) => {
        if (error) {
          this.failed(endpoint, error)
          reject(error)
          return
        }
        endpoint.consecutiveFailures = 0
        resolve(data)
      })
    })
  }

  /** The dispatcher interface @fastify/reply-from calls for every attempt (retries included). */
  request(request: Dispatcher.RequestOptions, callback: Callback): void {
    const context = attemptContext.getStore()
    const circuit = this.circuits[context?.routeClass ?? 'default']
    circuit.fire(request, context?.signal).then(
      (data) => callback(null, data),
      (error: Error) => callback(error),
    )
  }

  /** The readiness of the service (`GET /health/ready` on the next endpoint), never longer than `timeoutMs`. */
  async ready(
    headers: Record<string, string>,
    timeoutMs: number,
  ): Promise<'healthy' | 'unhealthy' | 'unreachable'> {
    const endpoint = this.pick()
    if (endpoint === undefined) return 'unreachable'
    const signal = AbortSignal.timeout(timeoutMs)
    try {
      const response = await this.healthAgent.request({
        origin: endpoint.origin,
        path: '/health/ready',
        method: 'GET',
        headers: { ...headers, host: this.url.host },
        signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      })
      await response.body.dump()
      return response.statusCode === 200 ? 'healthy' : 'unhealthy'
    } catch {
      return 'unreachable'
    }
  }

  /** The service's OpenAPI document (`GET /openapi.json`), within `timeoutMs`. */
  async document(timeoutMs: number): Promise<Record<string, unknown>> {
    const endpoint = this.pick()
    if (endpoint === undefined) throw new NoEndpointError(this.name)
    const response = await this.healthAgent.request({
      origin: endpoint.origin,
      path: '/openapi.json',
      method: 'GET',
      headers: { host: this.url.host, accept: 'application/json' },
      signal: AbortSignal.timeout(timeoutMs),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    })
    if (response.statusCode !== 200) {
      await response.body.dump()
      throw new Error(`${this.name} answered ${response.statusCode} for /openapi.json`)
    }
    return (await response.body.json()) as Record<string, unknown>
  }

  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.refreshTimer)
    for (const circuit of Object.values(this.circuits)) circuit.shutdown()
    await Promise.all([this.agent.close(), this.healthAgent.close()].map((done) => done.catch(() => {})))
  }
}
