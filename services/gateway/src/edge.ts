import rateLimit, { normalizeIP } from '@fastify/rate-limit'
import {
  asAuthError,
  authRefusal,
  bearerTokenOf,
  MALFORMED_AUTHORIZATION,
  type Principal,
  type Verifier,
} from '@task-manager/auth'
import { problemType, sendProblem } from '@task-manager/service-kit'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import type { GatewayMetrics } from './metrics.js'

export type Budget = 'reads' | 'writes' | 'creates' | 'login'

/** The budget a request draws from: logins apart, then creates (POST), writes, reads. */
export function budgetOf(method: string, url: string): Budget {
  if (method === 'GET' || method === 'HEAD') return 'reads'
  if (method === 'POST') return url.startsWith('/auth/') || url === '/auth' ? 'login' : 'creates'
  return 'writes'
}

/** Proxied routes anyone may call: registration, login and the public keys. */
const PUBLIC_ROUTES = new Set([
  'POST /users',
  'POST /auth/token',
  'GET /.well-known/jwks.json',
  'HEAD /.well-known/jwks.json',
])

const PUBLIC_PATHS = new Set([...PUBLIC_ROUTES].map((route) => route.slice(route.indexOf(' ') + 1)))

function pathOf(url: string): string {
  const query = url.indexOf('?')
  let path = query === -1 ? url : url.slice(0, query)
  if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1)
  return path
}

export function isPublicRoute(method: string, url: string): boolean {
  return PUBLIC_ROUTES.has(`${method} ${pathOf(url)}`)
}

/** The routes on those paths that need a caller (the edge checks their token like any other). */
const PROTECTED_ON_PUBLIC_PATHS = new Set(['GET /users', 'HEAD /users'])

/**
 * Whether the edge lets the request through without a token: a public route, or a method a public route's
 * path does not take at all — only the service knows which methods those are, and answers 405 with its Allow,
 * which a 401 from the edge would hide.
 */
export function passesWithoutToken(method: string, url: string): boolean {
  const path = pathOf(url)
  if (!PUBLIC_PATHS.has(path)) return false
  return !PROTECTED_ON_PUBLIC_PATHS.has(`${method} ${path}`)
}

/**
 * Who a request is counted against: the verified caller, else the client address. `request.ip` is the TCP peer,
 * or the address a trusted proxy (TRUST_PROXY, the ingress controller) put in X-Forwarded-For: a client's own
 * X-Forwarded-For never picks its bucket. IPv6 addresses are grouped per /64 as @fastify/rate-limit does.
 */
export function clientKey(request: FastifyRequest): string {
  return request.principal ? `sub:${request.principal.id}` : `ip:${normalizeIP(request.ip)}`
}

const exempt = (request: FastifyRequest) =>
  request.routeOptions.config?.probe === true || request.method === 'OPTIONS'

export interface EdgeOptions {
  /** null when AUTH_MODE is disabled: no token is looked at. */
  verifier: Verifier | null
  metrics: GatewayMetrics
  /** null when rate limiting is off. */
  rateLimits: { perMinute: Record<Budget, number>; windowMs: number; redis?: Redis } | null
  maxInFlightPerClient: number
}

/**
 * The checks every request passes at the edge, as onRequest hooks in this order (preflights were answered by
 * @fastify/cors before them; probes and scrapes skip the limits):
 *
 * 1. one Host header (RFC 9112 §3.2: a request with two is 400);
 * 2. the caller, if its token is in the verifier's cache of verified tokens (no crypto);
 * 3. the rate limit of the request's budget (@fastify/rate-limit, Redis store when shared), keyed by that caller
 *    or else the client address — so a request with an unknown or invalid token is counted against its
 *    address before any signature is checked, and a flood of bad tokens is limited like any other traffic;
 * 4. the token itself on protected proxied routes (401 problem+json when missing or bad);
 * 5. the client's requests in flight, bounded (429 past MAX_IN_FLIGHT_PER_CLIENT), so a few clients — slow
 *    readers, say — cannot hold every upstream connection.
 */
export const edgePlugin = fp<EdgeOptions>(
  async (app: FastifyInstance, { verifier, metrics, rateLimits, maxInFlightPerClient }) => {
    app.decorateRequest('principal', null)

    app.addHook('onRequest', (request, reply, done) => {
      const raw = request.raw.rawHeaders
      let hosts = 0
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i] as string
        if (name.length === 4 && name.toLowerCase() === 'host') hosts += 1
      }
      if (hosts > 1) {
        reply.header('connection', 'close')
        sendProblem(reply, 400, 'The request has more than one Host header', {
          type: problemType('bad-request'),
        })
        return
      }
      if (verifier !== null) {
        const token = bearerTokenOf(request.headers.authorization)
        if (token) request.principal = verifier.peek?.(token) ?? null
      }
      done()
    })

    if (rateLimits !== null) {
      await app.register(rateLimit, {
        global: false,
        enableDraftSpec: true,
        ...(rateLimits.redis ? { redis: rateLimits.redis, nameSpace: 'gateway-rate-limit:' } : {}),
        // A Redis outage must not take the API down with it: counting pauses, requests pass.
        skipOnError: true,
        cache: 50_000,
        errorResponseBuilder: (_request, context) => {
          const per = context.after === '1 minute' ? 'minute' : 'window'
          const error = new Error(
            `Rate limit exceeded: at most ${context.max} requests per ${per} for this client; retry in ${Math.ceil(context.ttl / 1000)} s`,
          ) as Error & { statusCode: number }
          error.statusCode = 429
          return error
        },
      })
      const limiters = {} as Record<Budget, (request: FastifyRequest, reply: FastifyReply) => Promise<void>>
      for (const budget of Object.keys(rateLimits.perMinute) as Budget[]) {
        limiters[budget] = app.rateLimit({
          max: rateLimits.perMinute[budget],
          timeWindow: rateLimits.windowMs,
          // The budget is part of the key: with Redis all budgets share one key space.
          keyGenerator: (request) => `${budget}:${clientKey(request)}`,
          onExceeded: () => metrics.rateLimited.inc({ budget }),
        }) as never
      }
      app.addHook('onRequest', (request, reply, done) => {
        if (exempt(request)) return done()
        limiters[budgetOf(request.method, request.url)](request, reply).then(() => done(), done)
      })
    }

    if (verifier !== null) {
      const refuse = (reply: FastifyReply, error: ReturnType<typeof asAuthError> | undefined) => {
        if (error?.reason === 'unavailable') reply.log.warn({ err: error.cause }, error.message)
        const refusal = authRefusal(error)
        sendProblem(reply, refusal.status, refusal.detail, { type: refusal.type, headers: refusal.headers })
      }
      app.addHook('onRequest', (request, reply, done) => {
        if (request.principal || request.routeOptions.config?.upstream === undefined) return done()
        if (request.method === 'OPTIONS' || passesWithoutToken(request.method, request.url)) return done()
        const token = bearerTokenOf(request.headers.authorization)
        if (token === undefined) return refuse(reply, undefined)
        if (token === null) return refuse(reply, MALFORMED_AUTHORIZATION())
        verifier.verify(token).then(
          (principal: Principal) => {
            request.principal = principal
            done()
          },
          (error: unknown) => refuse(reply, asAuthError(error)),
        )
      })
    }

    const inFlight = new Map<string, number>()
    app.addHook('onRequest', (request, reply, done) => {
      if (exempt(request)) return done()
      const key = clientKey(request)
      const count = inFlight.get(key) ?? 0
      if (count >= maxInFlightPerClient) {
        metrics.concurrencyLimited.inc()
        sendProblem(
          reply,
          429,
          `At most ${maxInFlightPerClient} requests in flight per client; retry when one has finished`,
          {
            type: problemType('too-many-in-flight'),
            headers: { 'retry-after': 1 },
          },
        )
        return
      }
      inFlight.set(key, count + 1)
      // 'close' comes once the answer is complete or the connection is gone, whichever is first.
      reply.raw.once('close', () => {
        const left = (inFlight.get(key) ?? 1) - 1
        if (left <= 0) inFlight.delete(key)
        else inFlight.set(key, left)
      })
      done()
    })
  },
  { name: 'gateway-edge', dependencies: ['task-manager-service-kit'], fastify: '5.x' },
)
