import { Upstream } from '@task-manager/service-kit'
import type { Registry } from 'prom-client'

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

/**
 * Asks the user-service whether a user exists: `GET {baseUrl}/users/{id}` with the caller's token.
 * The kit's Upstream gives each call a timeout and a circuit breaker, counts it in metrics, and turns
 * every failure into a 503 problem with Retry-After (never a 500).
 */
export class UserDirectory {
  readonly upstream: Upstream

  constructor(options: UserDirectoryOptions) {
    this.upstream = new Upstream({ name: 'user-service', ...options })
  }

  get breaker(): Upstream['breaker'] {
    return this.upstream.breaker
  }

  /** True when the user exists, false on 404; throws a 503 HttpProblem when the answer can't be had. */
  async exists(id: number, context: CallContext): Promise<boolean> {
    const headers = { ...context.headers }
    if (context.authorization) headers.authorization = context.authorization
    const response = await this.upstream.get(`users/${id}`, { headers })
    return response.status === 200
  }

  shutdown(): void {
    this.upstream.shutdown()
  }
}
