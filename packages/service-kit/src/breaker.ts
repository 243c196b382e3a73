import CircuitBreaker from 'opossum'
import type { Gauge } from 'prom-client'

export type CircuitState = 'closed' | 'half_open' | 'open'

/** Numeric encoding of a circuit's state for the `*_circuit_breaker_state` gauges. */
export const CIRCUIT_STATE_VALUE: Record<CircuitState, number> = { closed: 0, half_open: 1, open: 2 }

export interface CircuitOptions {
  /** How long the circuit stays open before it lets one trial call through (half-open). */
  resetTimeoutMs: number
  /** Open when more than this share of the calls in the rolling window failed… */
  errorThresholdPercentage: number
  /** …and at least this many calls were made in it. */
  volumeThreshold: number
  /** The rolling window (default 10 s, in 10 buckets). */
  rollingWindowMs?: number
  /** Errors that say nothing about the callee's health (a 4xx, the caller going away): not failures. */
  isNotFailure?: (error: unknown) => boolean
  /** The state gauge and its labels: kept current on every transition. */
  gauge?: { metric: Gauge<string>; labels: Record<string, string> }
  onStateChange?: (state: CircuitState) => void
}

/**
 * The project's one circuit breaker: opossum's, with the settings and bookkeeping every caller needs (the state
 * as a gauge, the time the circuit opened for Retry-After). The service kit's Upstream wraps its calls in one,
 * the gateway one per upstream and route class. Timeouts are the caller's (its HTTP client's), not opossum's:
 * a timed-out call rejects and counts as a failure like any other.
 */
export class Circuit<A extends unknown[], R> {
  readonly breaker: CircuitBreaker<A, R>
  private openedAt = 0

  constructor(
    action: (...args: A) => Promise<R>,
    private readonly options: CircuitOptions,
  ) {
    const window = options.rollingWindowMs ?? 10_000
    this.breaker = new CircuitBreaker(action, {
      timeout: false,
      resetTimeout: options.resetTimeoutMs,
      errorThresholdPercentage: options.errorThresholdPercentage,
      volumeThreshold: options.volumeThreshold,
      rollingCountTimeout: window,
      rollingCountBuckets: 10,
      errorFilter: options.isNotFailure ?? (() => false),
    })
    const changed = () => {
      const state = this.state
      options.gauge?.metric.set(options.gauge.labels, CIRCUIT_STATE_VALUE[state])
      options.onStateChange?.(state)
    }
    options.gauge?.metric.set(options.gauge.labels, 0)
    this.breaker.on('open', () => {
      this.openedAt = Date.now()
      changed()
    })
    this.breaker.on('halfOpen', changed)
    this.breaker.on('close', changed)
  }

  get state(): CircuitState {
    return this.breaker.opened ? 'open' : this.breaker.halfOpen ? 'half_open' : 'closed'
  }

  /** Calls the action through the breaker; rejects with code `EOPENBREAKER` at once while the circuit is open. */
  fire(...args: A): Promise<R> {
    return this.breaker.fire(...args)
  }

  /** Seconds until a trial call may be let through: the `Retry-After` of a refused call. */
  retryAfterSeconds(): number {
    const remaining = this.openedAt + this.options.resetTimeoutMs - Date.now()
    return Math.max(1, Math.ceil(remaining / 1000))
  }

  shutdown(): void {
    this.breaker.shutdown()
  }
}

/** True for the rejection of a call refused because its circuit is open. */
export const isOpenCircuit = (error: unknown) => (error as { code?: unknown })?.code === 'EOPENBREAKER'
