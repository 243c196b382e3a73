// How the gateway tells an upstream's failures apart: which count against the service (ejection, circuits),
// which a safe request may be retried after (and how many retries the service can take), and what the client
// is answered (502, 503 or 504).

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
  'GW_NO_ENDPOINT',
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

/**
 * Failures that prove the request never reached the service: the connection was refused or never set up, or
 * no endpoint was known. Retrying one sends the request for the first time, so any method may be retried.
 */
const NEVER_SENT_CODES = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'GW_NO_ENDPOINT'])

const codeOf = (error: unknown): string => {
  const cause = (error as { cause?: { code?: unknown } })?.cause
  const code = (error as { code?: unknown })?.code
  return String((typeof cause?.code === 'string' ? cause.code : code) ?? '')
}

export const isRetryableFailure = (error: unknown) => RETRYABLE_CODES.has(codeOf(error))

/** The attempt failed before the request was sent (see NEVER_SENT_CODES): safe to retry for every method. */
export const neverSent = (error: unknown) => NEVER_SENT_CODES.has(codeOf(error))

/** Failures that say something about the service (for ejection and the circuits); not e.g. the client leaving. */
export const isServiceFailure = (error: unknown) => {
  const code = codeOf(error)
  return CONNECTION_FAILURE_CODES.has(code) || TIMEOUT_CODES.has(code)
}

export class NoEndpointError extends Error {
  readonly code = 'GW_NO_ENDPOINT'
}

/**
 * Retries allowed per service: at most `ratio` of the requests of the current second plus a small floor, so
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

export type ProxyFailure = { status: 502 | 503 | 504; type: string; detail: string; retryAfter?: number }

/** Maps an attempt's error (the cause when reply-from wrapped it) to the client-facing answer. */
export function classifyFailure(
  backend: { readonly name: string },
  error: unknown,
  timeoutMs: number,
): ProxyFailure {
  const code = codeOf(error)
  if (TIMEOUT_CODES.has(code)) {
    return {
      status: 504,
      type: 'upstream-timeout',
      detail: `${backend.name} did not answer within ${timeoutMs} ms`,
    }
  }
  if (code === 'UND_ERR_CONNECT_TIMEOUT') {
    return { status: 504, type: 'upstream-timeout', detail: `Connecting to ${backend.name} timed out` }
  }
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') {
    return {
      status: 502,
      type: 'upstream-bad-gateway',
      detail: `${backend.name} closed the connection before answering`,
    }
  }
  return {
    status: 503,
    type: 'upstream-unavailable',
    detail: `${backend.name} is unavailable; retry shortly`,
    retryAfter: 1,
  }
}
