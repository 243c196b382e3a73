export type BreakerState = 'closed' | 'open' | 'half_open'

/** Numeric encoding of the state for the `gateway_circuit_breaker_state` gauge. */
export const BREAKER_STATE_VALUE: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 }

export interface BreakerOptions {
  /** Consecutive failures that open the circuit. */
  failureThreshold: number
  /** How long the circuit stays open before one probe is let through. */
  resetMs: number
  onStateChange?: (state: BreakerState) => void
  now?: () => number
}

/**
 * A consecutive-failure circuit breaker for one upstream.
 *
 * Written here rather than taken from opossum or @fastify/circuit-breaker: those wrap a promise-returning
 * function (opossum adds a timer and event emission per call), while a proxied request's outcome arrives
 * through undici handler callbacks on the proxy path, and the decision must be one branch there. The state
 * machine is the classic one: closed → (threshold failures) → open → (resetMs) → half-open, where exactly one
 * probe request is admitted; its success closes the circuit, its failure opens it again for another resetMs.
 */
export class CircuitBreaker {
  state: BreakerState = 'closed'
  private failures = 0
  private openedAt = 0
  private probeInFlight = false
  private readonly now: () => number

  constructor(private readonly options: BreakerOptions) {
    this.now = options.now ?? Date.now
  }

  /**
   * Whether a request may go upstream now. In half-open state only the first caller gets `true` (the probe);
   * the caller must then report the outcome with `success()` or `failure()`.
   */
  allow(): boolean {
    if (this.state === 'closed') return true
    if (this.state === 'open') {
      if (this.now() - this.openedAt < this.options.resetMs) return false
      this.transition('half_open')
    }
    if (this.probeInFlight) return false
    this.probeInFlight = true
    return true
  }

  /** Seconds until a probe may be admitted: the `Retry-After` of a rejected request. */
  retryAfterSeconds(): number {
    const remaining = this.options.resetMs - (this.now() - this.openedAt)
    return Math.max(1, Math.ceil(remaining / 1000))
  }

  success(): void {
    this.failures = 0
    if (this.state !== 'closed') {
      this.probeInFlight = false
      this.transition('closed')
    }
  }

  failure(): void {
    if (this.state === 'half_open') {
      this.probeInFlight = false
      this.open()
      return
    }
    if (this.state === 'open') return
    this.failures += 1
    if (this.failures >= this.options.failureThreshold) this.open()
  }

  /** A probe that ended without a verdict (e.g. the client went away) frees the half-open slot. */
  release(): void {
    if (this.state === 'half_open') this.probeInFlight = false
  }

  private open(): void {
    this.openedAt = this.now()
    this.failures = 0
    this.transition('open')
  }

  private transition(state: BreakerState): void {
    if (this.state === state) return
    this.state = state
    this.options.onStateChange?.(state)
  }
}
