import { Counter, Gauge, type Registry } from 'prom-client'
import { Circuit, isOpenCircuit } from './breaker.js'
import { HttpProblem, problemType } from './problem.js'

export interface UpstreamOptions {
  /** Service name, e.g. `project-service`: the `upstream` metric label and the subject of error details. */
  name: string
  /** Base URL, e.g. http://project-service:8005 */
  baseUrl: string
  /** Give up on one call after this long. */
  timeoutMs: number
  /** How long the breaker stays open before letting one trial call through. */
  resetTimeoutMs: number
  /** Open when more than this share of calls in the rolling 10 s window failed… */
  errorThresholdPercentage: number
  /** …and at least this many calls were made in it. */
  volumeThreshold: number
  registry?: Registry
}

export interface UpstreamRequest {
  /** Headers to send: the caller's authorization, propagationHeaders(request), … */
  headers?: Record<string, string>
  /** Statuses that are answers (returned); any other status is a failure. Default 200 and 404. */
  accept?: number[]
}

export interface UpstreamResponse<T> {
  status: number
  /** Parsed JSON body for 2xx answers, else undefined. */
  body: T | undefined
  headers: Headers
}

/** The upstream answered with a status the caller does not accept. */
export class UpstreamStatusError extends Error {
  constructor(
    readonly upstream: string,
    readonly status: number,
    readonly retryAfter: string | null,
  ) {
    super(`${upstream} answered ${status}`)
    this.name = 'UpstreamStatusError'
  }
}

function metricsFor(registry: Registry) {
  const calls =
    (registry.getSingleMetric('upstream_requests_total') as Counter<'upstream' | 'outcome'> | undefined) ??
    new Counter({
      name: 'upstream_requests_total',
      help: 'Calls to an upstream service by outcome (ok, not_found, rejected, error, timeout, circuit_open)',
      labelNames: ['upstream', 'outcome'] as const,
      registers: [registry],
    })
  const state =
    (registry.getSingleMetric('upstream_circuit_breaker_state') as Gauge<'upstream'> | undefined) ??
    new Gauge({
      name: 'upstream_circuit_breaker_state',
      help: 'Circuit breaker state towards an upstream service: 0 closed, 1 half-open, 2 open',
      labelNames: ['upstream'] as const,
      registers: [registry],
    })
  return { calls, state }
}

/**
 * A service this service calls: every call has its own timeout, goes through an opossum circuit
 * breaker, is counted in metrics, and any failure (refused, reset, timed out, 5xx, 429, circuit open)
 * becomes a 503 problem with Retry-After — never a 500, never a hang.
 *
 * A 4xx other than 429 means the upstream is up and answering, so it does not count towards opening
 * the breaker. Each call gets its own AbortSignal (opossum's shared AbortController would abort every
 * call in flight when one times out).
 */
export class Upstream {
  readonly circuit: Circuit<[string, UpstreamRequest], UpstreamResponse<unknown>>
  private readonly metrics: ReturnType<typeof metricsFor> | undefined
  private readonly base: string

  constructor(private readonly options: UpstreamOptions) {
    this.base = options.baseUrl.endsWith('/') ? options.baseUrl : `${options.baseUrl}/`
    this.metrics = options.registry ? metricsFor(options.registry) : undefined
    this.circuit = new Circuit((path: string, request: UpstreamRequest) => this.send(path, request), {
      resetTimeoutMs: options.resetTimeoutMs,
      errorThresholdPercentage: options.errorThresholdPercentage,
      volumeThreshold: options.volumeThreshold,
      isNotFailure: (error: unknown) =>
        error instanceof UpstreamStatusError && error.status < 500 && error.status !== 429,
      gauge: this.metrics && { metric: this.metrics.state, labels: { upstream: options.name } },
    })
  }

  /** The opossum breaker underneath (its state and stats). */
  get breaker() {
    return this.circuit.breaker
  }

  /** GET `path` (relative to the base URL); throws a 503 HttpProblem when no acceptable answer can be had. */
  async get<T>(path: string, request: UpstreamRequest = {}): Promise<UpstreamResponse<T>> {
    try {
      const response = (await this.circuit.fire(path, request)) as UpstreamResponse<T>
      this.count(response.status === 404 ? 'not_found' : 'ok')
      return response
    } catch (error) {
      throw this.toProblem(error)
    }
  }

  shutdown(): void {
    this.circuit.shutdown()
  }

  private async send(path: string, request: UpstreamRequest): Promise<UpstreamResponse<unknown>> {
    const response = await fetch(new URL(path, this.base), {
      headers: { accept: 'application/json', ...request.headers },
      signal: AbortSignal.timeout(this.options.timeoutMs),
    })
    const accept = request.accept ?? [200, 404]
    if (!accept.includes(response.status)) {
      await response.body?.cancel()
      throw new UpstreamStatusError(this.options.name, response.status, response.headers.get('retry-after'))
    }
    if (response.status >= 200 && response.status < 300 && response.status !== 204) {
      return { status: response.status, body: await response.json(), headers: response.headers }
    }
    await response.body?.cancel()
    return { status: response.status, body: undefined, headers: response.headers }
  }

  private count(outcome: string): void {
    this.metrics?.calls.inc({ upstream: this.options.name, outcome })
  }

  private toProblem(error: unknown): HttpProblem {
    const { name } = this.options
    const errorName = (error as { name?: unknown }).name
    let retryAfter = 1
    let detail: string
    if (isOpenCircuit(error)) {
      this.count('circuit_open')
      retryAfter = this.circuit.retryAfterSeconds()
      detail = `The ${name} is failing; calls to it are paused (circuit open). Retry shortly`
    } else if (errorName === 'TimeoutError') {
      this.count('timeout')
      detail = `The ${name} did not answer within ${this.options.timeoutMs} ms; retry shortly`
    } else if (error instanceof UpstreamStatusError) {
      this.count(error.status < 500 && error.status !== 429 ? 'rejected' : 'error')
      const seconds = Number(error.retryAfter)
      if (Number.isInteger(seconds) && seconds > 0) retryAfter = Math.min(seconds, 60)
      detail = `The ${name} could not answer (it answered ${error.status}); retry shortly`
    } else {
      this.count('error')
      detail = `The ${name} is unreachable; retry shortly`
    }
    return new HttpProblem(503, detail, {
      type: problemType('dependency-unavailable'),
      headers: { 'retry-after': retryAfter },
      extensions: { upstream: name },
    })
  }
}
