import type { IncomingMessage, OutgoingHttpHeader } from 'node:http'
import { normalizeIP } from '@fastify/rate-limit'
import type { Redis } from 'ioredis'
import type { ClientAddress } from './client-address.js'

export type Budget = 'reads' | 'writes' | 'creates' | 'login'

/** The budget a request draws from: logins apart, then creates (POST), writes, reads. */
export function budgetOf(method: string, url: string): Budget {
  if (method === 'GET' || method === 'HEAD') return 'reads'
  if (method === 'POST') return url.startsWith('/auth/') || url === '/auth' ? 'login' : 'creates'
  return 'writes'
}

/**
 * Whose budget a request draws from: the verified caller's, else its address's (trusted X-Forwarded-For
 * honoured, IPv6 grouped as @fastify/rate-limit groups it).
 */
export function clientKey(
  principal: { id: number } | null | undefined,
  clients: ClientAddress,
  req: IncomingMessage,
): string {
  return principal ? `sub:${principal.id}` : `ip:${normalizeIP(clients.ip(req))}`
}

/** One request counted against a budget. */
export interface Decision {
  allowed: boolean
  limit: number
  remaining: number
  /** Seconds until the window (and the count) resets. */
  resetSeconds: number
}

export interface RateLimiterOptions {
  perMinute: Record<Budget, number>
  windowMs: number
  /** Shared counters across gateway replicas; in-process counters when absent. */
  redis?: Redis
  /** In-process keys kept at most (oldest dropped first); bounds memory under an address-spraying client. */
  maxKeys?: number
  onExceeded?: (budget: Budget) => void
  onStoreError?: (error: unknown) => void
}

interface Window {
  count: number
  resetAt: number
}

type RedisWithCommand = Redis & {
  gatewayRateLimit(key: string, windowMs: number): Promise<[number, number]>
}

/**
 * Fixed-window counters per client and budget — the algorithm and the RateLimit headers of @fastify/rate-limit
 * (which the gateway used before), in memory or in Redis.
 *
 * Written here because the gateway's proxy path runs outside Fastify's hooks (see proxy.ts) and the plugin only
 * works as a hook; an in-memory decision is then one Map lookup and no promise. With Redis one atomic script
 * counts and reads the window's expiry in a single round trip, as the plugin's store does; when Redis fails,
 * counting pauses and requests pass (the plugin's `skipOnError`): a Redis outage never takes the API down.
 */
export class RateLimiter {
  private readonly windows = new Map<string, Window>()
  private readonly maxKeys: number
  private readonly sweeper: NodeJS.Timeout
  private readonly redis: RedisWithCommand | undefined

  constructor(private readonly options: RateLimiterOptions) {
    this.maxKeys = options.maxKeys ?? 50_000
    // Drops finished windows, so the map holds only the clients of the current window.
    this.sweeper = setInterval(() => this.sweep(Date.now()), Math.max(options.windowMs, 1000))
    this.sweeper.unref()
    if (options.redis) {
      const redis = options.redis as RedisWithCommand
      if (typeof redis.gatewayRateLimit !== 'function') {
        redis.defineCommand('gatewayRateLimit', {
          numberOfKeys: 1,
          lua: `
            local count = redis.call('INCR', KEYS[1])
            local ttl = redis.call('PTTL', KEYS[1])
            if ttl < 0 then
              redis.call('PEXPIRE', KEYS[1], ARGV[1])
              ttl = tonumber(ARGV[1])
            end
            return { count, ttl }`,
        })
      }
      this.redis = redis
    }
  }

  /** Counts one request of `client` (e.g. `sub:42`, `ip:203.0.113.7`) against `budget`. */
  take(budget: Budget, client: string): Decision | Promise<Decision> {
    const key = `${budget}:${client}`
    if (this.redis) {
      return this.redis.gatewayRateLimit(`gateway-rate-limit:${key}`, this.options.windowMs).then(
        ([count, ttl]) => this.decide(budget, count, ttl),
        (error: unknown) => {
          this.options.onStoreError?.(error)
          const limit = this.options.perMinute[budget]
          return { allowed: true, limit, remaining: limit, resetSeconds: 0 }
        },
      )
    }
    const now = Date.now()
    let window = this.windows.get(key)
    if (window === undefined || window.resetAt <= now) {
      if (window === undefined && this.windows.size >= this.maxKeys) {
        const oldest = this.windows.keys().next().value
        if (oldest !== undefined) this.windows.delete(oldest)
      }
      window = { count: 0, resetAt: now + this.options.windowMs }
      this.windows.set(key, window)
    }
    window.count += 1
    return this.decide(budget, window.count, window.resetAt - now)
  }

  private decide(budget: Budget, count: number, ttlMs: number): Decision {
    const limit = this.options.perMinute[budget]
    const allowed = count <= limit
    if (!allowed) this.options.onExceeded?.(budget)
    return { allowed, limit, remaining: Math.max(0, limit - count), resetSeconds: Math.ceil(ttlMs / 1000) }
  }

  /** The detail of a 429. */
  refusal(decision: Decision): string {
    const per = this.options.windowMs === 60_000 ? 'minute' : 'window'
    return `Rate limit exceeded: at most ${decision.limit} requests per ${per} for this client; retry in ${decision.resetSeconds} s`
  }

  private sweep(now: number): void {
    for (const [key, window] of this.windows) if (window.resetAt <= now) this.windows.delete(key)
  }

  close(): void {
    clearInterval(this.sweeper)
  }
}

/** `ratelimit-*` headers (IETF draft) of a decision, plus `retry-after` when refused, as a flat list. */
export function rateLimitHeaders(decision: Decision, out: OutgoingHttpHeader[]): void {
  out.push(
    'ratelimit-limit',
    decision.limit,
    'ratelimit-remaining',
    decision.remaining,
    'ratelimit-reset',
    decision.resetSeconds,
  )
  if (!decision.allowed) out.push('retry-after', decision.resetSeconds)
}
