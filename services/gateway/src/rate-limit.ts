import rateLimit, { normalizeIP } from '@fastify/rate-limit'
import type {} from '@task-manager/auth'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import type { GatewayMetrics } from './metrics.js'

export type Budget = 'reads' | 'writes' | 'creates' | 'login'

export interface RateLimitOptions {
  perMinute: Record<Budget, number>
  windowMs: number
  metrics: GatewayMetrics
  /** Shared counters across gateway replicas; in-process counters when absent. */
  redis?: Redis
}

/** The budget a request draws from: logins apart, then creates (POST), writes, reads. */
export function budgetOf(method: string, url: string): Budget {
  if (method === 'GET' || method === 'HEAD') return 'reads'
  if (method === 'POST') return url.startsWith('/auth/') || url === '/auth' ? 'login' : 'creates'
  return 'writes'
}

/**
 * Per-client rate limits at the edge, through @fastify/rate-limit. The client is the token's subject when the
 * request carries a verified token, else its address (`request.ip`, which honours X-Forwarded-For only from the
 * configured trusted proxies). Each budget has its own counter; 429 answers carry `Retry-After` and the
 * RateLimit headers of the IETF draft, which also accompany allowed responses.
 */
export const rateLimitPlugin = fp<RateLimitOptions>(
  async (app: FastifyInstance, { perMinute, windowMs, metrics, redis }) => {
    await app.register(rateLimit, {
      global: false,
      enableDraftSpec: true,
      ...(redis ? { redis, nameSpace: 'gateway-rate-limit:' } : {}),
      // A Redis outage must not take the API down with it: counting pauses, requests pass (and are logged).
      skipOnError: true,
      cache: 50_000,
      errorResponseBuilder: (_request, context) => {
        const error = new Error(
          `Rate limit exceeded: at most ${context.max} requests per ${context.after === '1 minute' ? 'minute' : 'window'} for this client; retry in ${Math.ceil(context.ttl / 1000)} s`,
        ) as Error & { statusCode: number }
        error.statusCode = 429
        return error
      },
    })

    const handlers = {} as Record<Budget, (request: FastifyRequest, reply: FastifyReply) => Promise<void>>
    for (const budget of Object.keys(perMinute) as Budget[]) {
      handlers[budget] = app.rateLimit({
        max: perMinute[budget],
        timeWindow: windowMs,
        // The budget is part of the key: with Redis all budgets share one key space.
        keyGenerator: (request) =>
          request.principal
            ? `${budget}:sub:${request.principal.id}`
            : `${budget}:ip:${normalizeIP(request.ip)}`,
        onExceeded: () => metrics.rateLimited.inc({ budget }),
      }) as never
    }

    app.addHook('onRequest', (request, reply, done) => {
      // Probes and scrapes are never limited; preflights are answered by CORS before this hook.
      if (request.routeOptions.config?.probe || request.method === 'OPTIONS') return done()
      handlers[budgetOf(request.method, request.url)](request, reply).then(() => done(), done)
    })
  },
  { name: 'gateway-rate-limit', fastify: '5.x' },
)
