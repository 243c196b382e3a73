import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import httpProxy from '@fastify/http-proxy'
import { BODY_LIMIT_BYTES, HttpProblem, problemType, sendProblem } from '@task-manager/service-kit'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { GatewayMetrics } from './metrics.js'
import { classifyFailure, isRetryableFailure, type Upstream } from './upstream.js'

/** Which upstream serves which path prefix. */
export interface RouteTable {
  prefix: string
  upstream: Upstream
  /** Routes under the prefix; default the prefix itself and everything below it. */
  routes?: string[]
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Name of the upstream a proxied route goes to. */
    upstream?: string
  }
}

/** Methods proxied. OPTIONS stays with @fastify/cors (preflights are answered at the edge). */
const PROXIED_METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT']
/** Safe methods: the only ones re-sent after a connection failure (they have no body to replay). */
const RETRIED_METHODS = new Set(['GET', 'HEAD'])

/** RFC 9110 §7.6.1 hop-by-hop fields, plus the legacy `proxy-connection`. */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]

/**
 * Identity headers only the platform may set. Services must be able to trust that a request carrying them
 * came from inside, so whatever a client sends under these names is removed at the edge.
 */
const IDENTITY_PREFIXES = [
  'x-user',
  'x-auth',
  'x-internal',
  'x-remote-user',
  'x-forwarded-user',
  'x-subject',
  'x-role',
]
const IDENTITY_EXACT = new Set(['remote-user', 'x-client-verify', 'x-ssl-client-dn'])

function isIdentityHeader(name: string): boolean {
  if (name.charCodeAt(0) !== 120 /* x */ && name !== 'remote-user') return false
  if (IDENTITY_EXACT.has(name)) return true
  for (const prefix of IDENTITY_PREFIXES) if (name.startsWith(prefix)) return true
  return false
}

const HOP_BY_HOP_SET = new Set(HOP_BY_HOP)

/**
 * Headers sent upstream: the client's minus hop-by-hop and identity headers, plus X-Forwarded-* and ids.
 * Builds a new object instead of deleting from the given one: `delete` turns an object into a slow dictionary
 * and measurably adds to the garbage collector's work per request.
 */
export function upstreamHeaders(request: FastifyRequest, headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {}
  for (const name in headers) {
    if (HOP_BY_HOP_SET.has(name) || isIdentityHeader(name)) continue
    out[name] = headers[name]
  }
  // Only the part of the chain Fastify trusts (TRUST_PROXY): a client's own X-Forwarded-For is dropped unless
  // the hop that delivered it is a configured proxy. `ips` runs from our peer back to the client.
  if (headers['x-forwarded-for'] === undefined) {
    out['x-forwarded-for'] = request.raw.socket.remoteAddress
  } else {
    const chain = request.ips
    out['x-forwarded-for'] = chain && chain.length > 1 ? chain.toReversed().join(', ') : request.ip
  }
  out['x-forwarded-proto'] = request.protocol
  out['x-forwarded-host'] = request.host
  out['x-request-id'] = request.id
  return out
}

function responseHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  const connection = headers.connection
  const listed = typeof connection === 'string' ? connection.toLowerCase() : ''
  const out: Record<string, unknown> = {}
  for (const name in headers) {
    if (
      HOP_BY_HOP_SET.has(name) ||
      (listed !== '' && listed.includes(name) && connectionNames(listed).has(name))
    ) {
      continue
    }
    out[name] = headers[name]
  }
  return out
}

function connectionNames(connection: string): Set<string> {
  return new Set(connection.split(',').map((token) => token.trim()))
}

/** Reads a body of unknown length (chunked) up to the limit, so an oversized one never reaches a service. */
async function collectBody(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of stream) {
    size += (chunk as Buffer).length
    if (size > limit) {
      stream.destroy()
      throw new HttpProblem(413, `Request body exceeds ${limit} bytes`, { headers: { connection: 'close' } })
    }
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks, size)
}

export interface ProxyOptions {
  routes: RouteTable[]
  metrics: GatewayMetrics
  retryAttempts: number
  responseTimeoutMs: number
  bodyLimit?: number
}

/**
 * The proxied routes: @fastify/http-proxy (over @fastify/reply-from) per prefix, with the upstream as the
 * undici dispatcher, a circuit breaker check before anything is sent, retries of safe methods after connection
 * failures within a budget, and failures mapped to problem+json naming the service.
 */
export const proxyPlugin = fp<ProxyOptions>(
  async (
    app: FastifyInstance,
    { routes, metrics, retryAttempts, responseTimeoutMs, bodyLimit = BODY_LIMIT_BYTES },
  ) => {
    // Bodies with a declared length are refused before they are read; Fastify's bodyLimit does not apply to
    // the pass-through parser http-proxy installs.
    // Hooks here are callback-style: an async hook costs a promise and a microtask on every request.
    app.addHook('onRequest', (request, reply, done) => {
      const length = request.headers['content-length']
      if (length !== undefined && Number(length) > bodyLimit) {
        reply.header('connection', 'close')
        done(new HttpProblem(413, `Request body exceeds ${bodyLimit} bytes`))
        return
      }
      done()
    })

    for (const { prefix, upstream, routes: routeList } of routes) {
      const config = { upstream: upstream.name }

      const admit = (reply: FastifyReply, done: (error?: Error) => void) => {
        if (!upstream.breaker.allow()) {
          metrics.breakerRejections.inc({ upstream: upstream.name })
          sendProblem(reply, 503, `${upstream.name} is failing; its circuit is open, retry shortly`, {
            type: problemType('circuit-open'),
            headers: { 'retry-after': upstream.breaker.retryAfterSeconds() },
            extensions: { service: upstream.name },
          })
          return
        }
        upstream.retryBudget.recordRequest()
        done()
      }

      const preHandler = (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void) => {
        // A body of unknown length (chunked) is read up to the limit first; the breaker is asked last, so an
        // admitted half-open probe is always sent.
        if (request.body && request.headers['content-length'] === undefined) {
          collectBody(request.body as Readable, bodyLimit).then((body) => {
            request.body = body
            admit(reply, done)
          }, done)
          return
        }
        admit(reply, done)
      }

      await app.register(httpProxy, {
        prefix,
        upstream: upstream.url.origin,
        rewritePrefix: prefix,
        routes: routeList,
        httpMethods: PROXIED_METHODS,
        config,
        preHandler,
        undici: upstream as never,
        disableRequestLogging: true,
        internalRewriteLocationHeader: false,
        replyOptions: {
          rewriteRequestHeaders: upstreamHeaders as never,
          rewriteHeaders: responseHeaders as never,
          // Typed as Fastify objects upstream, but `req` is reply-from's request ({method, url, ...}) and `res`
          // the upstream response, if any.
          retryDelay: (details) => {
            const { err, attempt } = details
            const req = details.req as unknown as { method: string }
            const res = details.res as unknown
            if (!err || res || !RETRIED_METHODS.has(req.method) || !isRetryableFailure(err)) return null
            if (attempt >= retryAttempts || upstream.breaker.state === 'open') return null
            if (!upstream.retryBudget.tryRetry()) return null
            metrics.retries.inc({ upstream: upstream.name })
            // reply-from schedules the retry with setTimeout and skips it for 0, so 1 ms means "now".
            return 1
          },
          onError: (rawReply, { error }) => {
            const reply = rawReply as FastifyReply
            const failure = classifyFailure(upstream, error, responseTimeoutMs)
            reply.request.log.warn({ err: error, upstream: upstream.name }, failure.detail)
            const type =
              failure.status === 504
                ? 'upstream-timeout'
                : failure.status === 502
                  ? 'upstream-bad-gateway'
                  : 'upstream-unavailable'
            sendProblem(reply, failure.status, failure.detail, {
              type: problemType(type),
              headers: failure.retryAfter ? { 'retry-after': failure.retryAfter } : {},
              extensions: { service: upstream.name },
            })
          },
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
  },
  { name: 'gateway-proxy', dependencies: ['task-manager-service-kit'], fastify: '5.x' },
)
