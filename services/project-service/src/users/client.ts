import type { Upstream } from '@task-manager/service-kit'

export interface CallContext {
  /** The caller's `authorization` header, passed on so the user-service sees who is asking. */
  authorization?: string
  /** x-request-id / traceparent (service-kit `propagationHeaders`). */
  headers: Record<string, string>
}

/**
 * Asks the user-service whether a user exists: `GET {baseUrl}/users/{id}` with the caller's token. The kit's
 * Upstream (the one client every service calls another through) gives each call a timeout and a circuit
 * breaker, counts it in metrics, and turns every failure into a 503 problem with Retry-After (never a 500).
 */
export class UserDirectory {
  /** The kit's client, built from the USER_SERVICE_* settings in app.ts. */
  constructor(private readonly upstream: Upstream) {}

  /** True when the user exists, false on 404; throws a 503 HttpProblem when the answer can't be had. */
  async exists(id: number, context: CallContext): Promise<boolean> {
    const headers = { ...context.headers }
    if (context.authorization) headers.authorization = context.authorization
    const response = await this.upstream.get(`users/${id}`, { headers })
    return response.status === 200
  }
}
