// The one HTTP client of the app: same-origin calls to the gateway's API, the access token attached from
// memory, a deadline on every call, and every refusal turned into an ApiError that says what happened.

/** RFC 9457 problem details, as every service answers errors (plus `errors[]` on validation failures). */
export interface Problem {
  type?: string
  title?: string
  status?: number
  detail?: string
  errors?: { in?: string; field: string; message: string }[]
}

/** A failed call: `status` 0 means no answer (network down, or the deadline passed). */
export class ApiError extends Error {
  readonly status: number
  readonly problem: Problem
  /** Seconds from `Retry-After` (429, 503), when the server said. */
  readonly retryAfter: number | null
  constructor(status: number, problem: Problem, retryAfter: number | null) {
    super(problem.detail ?? problem.title ?? `HTTP ${status}`)
    this.name = 'ApiError'
    this.status = status
    this.problem = problem
    this.retryAfter = retryAfter
  }

  /** Per-field messages of a 422, keyed by the field's top-level name (`tags.3` → `tags`). */
  get fieldErrors(): Record<string, string> {
    const fields: Record<string, string> = {}
    for (const error of this.problem.errors ?? []) {
      const name = error.field.split('.')[0] ?? ''
      if (name && !(name in fields)) fields[name] = error.message
    }
    return fields
  }
}

export interface Answer<T> {
  status: number
  data: T
  /** The `ETag` of a task answer: what `If-Match` sends back. */
  etag: string | null
  /** The `cursor` of `Link: <…>; rel="next"` (keyset paging), null on the last page. */
  next: string | null
}

export interface CallOptions {
  body?: unknown
  query?: Record<string, string | number | undefined>
  ifMatch?: string
  /** Default 15 s: no call waits longer for the server. */
  timeoutMs?: number
}

export const DEFAULT_TIMEOUT_MS = 15_000

/** The `cursor` parameter of the `rel="next"` link of a Link header (RFC 8288). */
export function nextCursor(link: string | null): string | null {
  if (!link) return null
  for (const part of link.split(',')) {
    const match = /<([^>]*)>\s*;(.*)/.exec(part.trim())
    if (!match?.[1] || !/\brel="?next"?/.test(match[2] ?? '')) continue
    return new URL(match[1], 'http://placeholder.invalid').searchParams.get('cursor')
  }
  return null
}

function retryAfterOf(value: string | null): number | null {
  if (!value) return null
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds))
  const date = Date.parse(value)
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000))
}

export function queryString(query: CallOptions['query']): string {
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== '') params.set(key, String(value))
  }
  const text = params.toString()
  return text ? `?${text}` : ''
}

/**
 * The access token lives here, in this object's memory only: never in localStorage, a cookie or a URL,
 * so a reload signs the user out (docs/web.md, "Tokens").
 */
export class Api {
  #token: string | null = null
  readonly #base: string
  /** `base` is empty in the browser (same origin); tests give the server's URL. */
  constructor(base = '') {
    this.#base = base
  }
  /** Called on any 401 of a signed-in call: the session is over, back to sign-in. */
  onUnauthorized: ((error: ApiError) => void) | null = null

  get signedIn(): boolean {
    return this.#token !== null
  }

  setToken(token: string | null): void {
    this.#token = token
  }

  async call<T = unknown>(method: string, path: string, options: CallOptions = {}): Promise<Answer<T>> {
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json' }
    if (this.#token) headers.authorization = `Bearer ${this.#token}`
    if (options.body !== undefined) headers['content-type'] = 'application/json'
    if (options.ifMatch) headers['if-match'] = options.ifMatch
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
    let response: Response
    try {
      response = await fetch(this.#base + path + queryString(options.query), {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: AbortSignal.timeout(timeoutMs),
        credentials: 'same-origin',
        cache: 'no-store',
      })
    } catch (error) {
      const timedOut = error instanceof DOMException && error.name === 'TimeoutError'
      throw new ApiError(
        0,
        {
          title: timedOut ? 'No answer' : 'Network error',
          detail: timedOut
            ? `The server did not answer within ${timeoutMs / 1000} s`
            : 'The server could not be reached; check your connection',
        },
        null,
      )
    }
    const text = await response.text()
    let data: unknown = text
    if (text && /json/.test(response.headers.get('content-type') ?? '')) {
      try {
        data = JSON.parse(text)
      } catch {
        data = text
      }
    }
    if (!response.ok) {
      const problem: Problem =
        typeof data === 'object' && data !== null ? (data as Problem) : { detail: response.statusText }
      const error = new ApiError(response.status, problem, retryAfterOf(response.headers.get('retry-after')))
      if (response.status === 401 && this.#token) this.onUnauthorized?.(error)
      throw error
    }
    return {
      status: response.status,
      data: data as T,
      etag: response.headers.get('etag'),
      next: nextCursor(response.headers.get('link')),
    }
  }
}
