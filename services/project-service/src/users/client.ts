import { HttpProblem, problemType } from '@task-manager/service-kit'
import CircuitBreaker from 'opossum'
import type { Registry } from 'prom-client'
import { Counter, Gauge } from 'prom-client'

export interface UserDirectoryOptions {
  /** Base URL of the user-service, e.g. http://user-service:8004 */
  baseUrl: string
  /** Give up on one call after this long. */
  timeoutMs: number
  /** How long the breaker stays open before letting one trial call through. */
  resetTimeoutMs: number
  /** Open when more than this share of calls in the rolling window failed… */
  errorThresholdPercentage: number
  /** …and at least this many calls were made in it. */
  volumeThreshold: number
  registry?: Registry
}

export interface CallContext {
  /** The caller's `authorization` header, passed on so the user-service sees who is asking. */
  authorization?: string
  /** x-request-id / traceparent (service-kit `propagationHeaders`). */
  headers: Record<string, string>
}

/** The user-service answered, but not with 200/404 (e.g. refused the token): not its health's fault. */
class UnexpectedAnswer extends Error {
  constructor(
    readonly status: number,
    readonly retryAfter: string | null,
  ) {
    super(`user-service answered ${status}`)
  }
}

const UPSTREAM = 'user-service'
const STATE_VALUE = { closed: 0, half_open: 1, open: 2 } as const

/**
 * Asks the user-service whether a user exists: `GET {baseUrl}/users/{id}` with the caller's token.
 * Each call has a timeout (its own AbortSignal: opossum's shared AbortController would abort every call
 * in flight when one times out). Calls go through an opossum circuit breaker, so while the user-service
 * is down or slow we answer 503 at once instead of tying up requests. Every failure becomes a 503
 * problem with Retry-After, never a 500.
 */
export class UserDirectory {
  readonly breaker: CircuitBreaker<[number, CallContext], boolean>
  private openedAt = 0
  private readonly calls: Counter<'upstream' | 'outcome'> | undefined

  constructor(private readonly options: UserDirectoryOptions) {
    this.breaker = new CircuitBreaker((id: number, context: CallContext) => this.fetchExists(id, context), {
      timeout: false,
      resetTimeout: options.resetTimeoutMs,
      errorThresholdPercentage: options.errorThresholdPercentage,
      volumeThreshold: options.volumeThreshold,
      rollingCountTimeout: 10_000,
      rollingCountBuckets: 10,
      // A 4xx other than 404 means the user-service is up and answering: it must not open the breaker.
      errorFilter: (error: unknown) =>
        error instanceof UnexpectedAnswer && error.status < 500 && error.status !== 429,
    })
    this.breaker.on('open', () => {
      this.openedAt = Date.now()
    })

    if (options.registry) {
      const breaker = this.breaker
      new Gauge({
        name: 'upstream_circuit_breaker_state',
        help: 'Circuit breaker state towards an upstream service: 0 closed, 1 half-open, 2 open',
        labelNames: ['upstream'] as const,
        registers: [options.registry],
        collect() {
          const state = breaker.opened ? 'open' : breaker.halfOpen ? 'half_open' : 'closed'
          this.set({ upstream: UPSTREAM }, STATE_VALUE[state])
        },
      })
      this.calls = new Counter({
        name: 'upstream_requests_total',
        help: 'Calls to an upstream service by outcome (ok, not_found, rejected, error, timeout, circuit_open)',
        labelNames: ['upstream', 'outcome'] as const,
        registers: [options.registry],
      })
    }
  }

  /** True when the user exists, false on 404; throws a 503 HttpProblem when the answer can't be had. */
  async exists(id: number, context: CallContext): Promise<boolean> {
    try {
      const found = await this.breaker.fire(id, context)
      this.count(found ? 'ok' : 'not_found')
      return found
    } catch (error) {
      throw this.toProblem(error)
    }
  }

  shutdown(): void {
    this.breaker.shutdown()
  }

  private async fetchExists(id: number, context: CallContext): Promise<boolean> {
    const headers: Record<string, string> = { accept: 'application/json', ...context.headers }
    if (context.authorization) headers.authorization = context.authorization
    const response = await fetch(new URL(`users/${id}`, withSlash(this.options.baseUrl)), {
      headers,
      signal: AbortSignal.timeout(this.options.timeoutMs),
    })
    // The body is not needed; release the connection either way.
    await response.body?.cancel()
    if (response.status === 200) return true
    if (response.status === 404) return false
    throw new UnexpectedAnswer(response.status, response.headers.get('retry-after'))
  }

  private count(outcome: string): void {
    this.calls?.inc({ upstream: UPSTREAM, outcome })
  }

  private toProblem(error: unknown): HttpProblem {
    const code = (error as { code?: unknown }).code
    const name = (error as { name?: unknown }).name
    let retryAfter = 1
    let detail: string
    if (code === 'EOPENBREAKER') {
      this.count('circuit_open')
      const remaining = this.openedAt + this.options.resetTimeoutMs - Date.now()
      retryAfter = Math.max(1, Math.ceil(remaining / 1000))
      detail = 'The user-service is failing; calls to it are paused (circuit open). Retry shortly'
    } else if (name === 'TimeoutError') {
      this.count('timeout')
      detail = `The user-service did not answer within ${this.options.timeoutMs} ms; retry shortly`
    } else if (error instanceof UnexpectedAnswer) {
      this.count(error.status < 500 && error.status !== 429 ? 'rejected' : 'error')
      const seconds = Number(error.retryAfter)
      if (Number.isInteger(seconds) && seconds > 0) retryAfter = Math.min(seconds, 60)
      detail = `The user-service could not confirm the user (it answered ${error.status}); retry shortly`
    } else {
      this.count('error')
      detail = 'The user-service is unreachable; retry shortly'
    }
    return new HttpProblem(503, detail, {
      type: problemType('dependency-unavailable'),
      headers: { 'retry-after': retryAfter },
    })
  }
}

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`
}
