import type { IncomingHttpHeaders } from 'node:http'
import httpProxy from '@fastify/http-proxy'
import {
  BODY_LIMIT_BYTES,
  injectUnsampledTraceContext,
  isOpenCircuit,
  problemType,
  sendProblem,
  tracingActive,
} from '@task-manager/service-kit'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { attemptContext, type RouteClass, type ServiceBackend } from './backend.js'
import { classifyFailure, isRetryableFailure, neverSent } from './failures.js'
import type { GatewayMetrics } from './metrics.js'

/** A proxied path prefix and the service behind it. */
export interface ProxyRoute {
  prefix: string
  backend: ServiceBackend
  /** Only the prefix itself (http-proxy's `routes: ['/']`); default the prefix and everything below it. */
  exact?: boolean
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Name of the service a proxied route goes to. */
    upstream?: string
  }
}

/** Methods proxied. OPTIONS stays with @fastify/cors (preflights are answered at the edge). */
const PROXIED_METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT']
/** Safe methods: re-sent after any connection failure (the others only when the request was never sent). */
const RETRIED_METHODS = new Set(['GET', 'HEAD'])
/** The wait before the second retry (doubling after): the first one goes to the next endpoint at once. */
const RETRY_BACKOFF_MS = 50

/**
 * RFC 9110 §7.6.1 hop-by-hop fields, the legacy `proxy-connection`, and `expect`: the gateway answers
 * `100-continue` itself (Node's server does) and sends the service a complete request.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'expect',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

/**
 * Identity headers only the platform may set. Services must be able to trust that a request carrying them
 * came from inside, so whatever a client sends under these names is removed at the edge.
 */
const IDENTITY_PREFIXES = [
  'x-user',
  'x-auth',
  'x-internal',
  'x-remote-user',
  'x-forwarded-',
  'x-subject',
  'x-role',
  'x-real-ip',
]
const IDENTITY_EXACT = new Set(['remote-user', 'x-client-verify', 'x-ssl-client-dn', 'forwarded'])

function isIdentityHeader(name: string): boolean {
  if (IDENTITY_EXACT.has(name)) return true
  if (name.charCodeAt(0) !== 120 /* x */) return false
  for (const prefix of IDENTITY_PREFIXES) if (name.startsWith(prefix)) return true
  return false
}

/** Names listed in a Connection header (hop-by-hop by declaration). */
function connectionListed(connection: unknown): Set<string> | undefined {
  if (typeof connection !== 'string') return undefined
  const value = connection.toLowerCase()
  if (value === 'keep-alive' || value === 'close') return undefined
  return new Set(value.split(',').map((token) => token.trim()))
}

/**
 * Headers sent upstream: the client's minus hop-by-hop, identity and forwarding ones, plus the gateway's own
 * view of the request (X-Forwarded-For is the client address as the gateway established it: the TCP peer, or
 * what a trusted proxy said; never a chain a client made up), and the request id.
 */
function upstreamHeaders(request: FastifyRequest, headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {}
  // With tracing on, the HTTP client instrumentation writes the trace context of the gateway's own call; the
  // client's traceparent would be a second one, and the service would start a new trace.
  const dropTraceContext = tracingActive()
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || isIdentityHeader(name)) continue
    if (dropTraceContext && (name === 'traceparent' || name === 'tracestate')) continue
    out[name] = headers[name]
  }
  out['x-forwarded-for'] = request.ip
  out['x-forwarded-proto'] = request.protocol
  out['x-forwarded-host'] = request.host
  out['x-request-id'] = request.id
  // An unsampled request's trace context (the HTTP client instrumentation writes a sampled one's).
  if (dropTraceContext) injectUnsampledTraceContext(out as Record<string, unknown>)
  return out
}

/** The service's response headers minus hop-by-hop ones (those named in its Connection header too). */
function responseHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  const listed = connectionListed(headers.connection)
  const out: Record<string, unknown> = {}
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || name === 'x-request-id' || listed?.has(name)) continue
    out[name] = headers[name]
  }
  return out
}

/** Login and registration hash a password: slow by design, with a timeout and circuits of their own. */
export function routeClassOf(method: string, url: string): RouteClass {
  if (method !== 'POST') return 'default'
  const query = url.indexOf('?')
  let path = query === -1 ? url : url.slice(0, query)
  if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1)
  return path === '/auth/token' || path === '/users' ? 'login' : 'default'
}

export interface ProxyRoutesOptions {
  routes: ProxyRoute[]
  metrics: GatewayMetrics
  retryAttempts: number
  timeoutMs: Record<RouteClass, number>
  bodyLimit?: number
}

/**
 * The proxied routes: one @fastify/http-proxy registration per prefix, on @fastify/reply-from and undici, with
 * the service's `ServiceBackend` as the dispatcher. Bodies are read whole by Fastify (its body limit: 413 above
 * 1 MiB, chunked or not) before anything goes upstream, so a client sending slowly holds no upstream connection
 * and Node's request deadline (REQUEST_TIMEOUT_MS) bounds how long it can take. Safe methods are retried after
 * connection failures within the service's retry budget; every failure answers problem+json naming the service.
 */
export async function proxyRoutes(
  app: FastifyInstance,
  { routes, metrics, retryAttempts, timeoutMs, bodyLimit = BODY_LIMIT_BYTES }: ProxyRoutesOptions,
) {
  // Encapsulated here: only the proxied routes read every content type as raw bytes (forwarded unchanged).
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit }, (_request, body, done) => done(null, body))

  for (const { prefix, backend, exact } of routes) {
    const onError = (reply: FastifyReply, { error }: { error: Error }) => {
      const routeClass = routeClassOf(reply.request.method, reply.request.url)
      const cause = (error as { cause?: unknown }).cause ?? error
      if (isOpenCircuit(cause)) {
        metrics.breakerRejections.inc({ upstream: backend.name, route_class: routeClass })
        sendProblem(reply, 503, `${backend.name} is failing; its circuit is open, retry shortly`, {
          type: problemType('circuit-open'),
          headers: { 'retry-after': backend.circuits[routeClass].retryAfterSeconds() },
          extensions: { service: backend.name },
        })
        return
      }
      const failure = classifyFailure(backend, cause, timeoutMs[routeClass])
      reply.request.log.warn({ err: cause, upstream: backend.name }, failure.detail)
      sendProblem(reply, failure.status, failure.detail, {
        type: problemType(failure.type),
        headers: failure.retryAfter ? { 'retry-after': failure.retryAfter } : {},
        extensions: { service: backend.name },
      })
    }

    await app.register(httpProxy, {
      prefix,
      upstream: backend.url.origin,
      rewritePrefix: prefix,
      routes: exact ? ['/'] : undefined,
      httpMethods: PROXIED_METHODS,
      config: { upstream: backend.name },
      proxyPayloads: false,
      undici: backend as never,
      disableRequestLogging: true,
      internalRewriteLocationHeader: false,
      replyOptions: {
        rewriteRequestHeaders: upstreamHeaders as never,
        rewriteHeaders: responseHeaders as never,
        onError: onError as never,
        // Typed as Fastify objects, but `req` is reply-from's request ({method, ...}) and `res` the upstream
        // response, if any.
        retryDelay: (details) => {
          const { err, attempt } = details
          const req = details.req as unknown as { method: string }
          const res = details.res as unknown
          if (!err || res || attempt >= retryAttempts) return null
          // A safe method after any connection failure; every method when the request was never sent (a
          // refused connection, as when a NetworkPolicy controller has not yet admitted a new pod).
          if (!(RETRIED_METHODS.has(req.method) ? isRetryableFailure(err) : neverSent(err))) return null
          if (backend.circuits.default.state === 'open' || !backend.retryBudget.tryRetry()) return null
          metrics.retries.inc({ upstream: backend.name })
          // The first retry goes at once, to the next endpoint (reply-from skips a delay of 0, so 1 ms means
          // "now"); later ones back off, in case the failure is on this side and passes in a moment.
          return attempt === 0 ? 1 : RETRY_BACKOFF_MS * 2 ** (attempt - 1)
        },
      },
      handler: (request, reply, dest, options) => {
        const routeClass = routeClassOf(request.method, request.url)
        backend.retryBudget.recordRequest()
        // The client going away cancels the attempt in flight (reply-from itself would let it run on).
        const abort = new AbortController()
        reply.raw.once('close', () => {
          if (!reply.raw.writableFinished) abort.abort(new Error('the client went away'))
        })
        const body = request.body as Buffer | undefined
        const from = {
          ...options,
          timeout: timeoutMs[routeClass],
          ...(body && body.length > 0
            ? { body, contentType: request.headers['content-type'] ?? 'application/octet-stream' }
            : {}),
        }
        return attemptContext.run({ routeClass, signal: abort.signal }, () => reply.from(dest, from as never))
      },
    })
  }

  app.addHook('onResponse', (request, reply, done) => {
    const upstream = request.routeOptions.config?.upstream
    if (upstream === undefined) return done()
    metrics.upstreamDuration.observe(
      {
        upstream,
        route: request.routeOptions.url ?? 'unmatched',
        method: request.method,
        status_code: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    )
    done()
  })
}
