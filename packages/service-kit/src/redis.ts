import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'

/**
 * The Redis client a service uses for state shared by its replicas (rate-limit counters), or undefined when
 * `url` is empty. It fails fast instead of queueing, so a request never waits on a Redis outage (callers skip
 * the shared state on error); it is not awaited at start, so the service starts and serves while Redis is
 * down, and ioredis keeps reconnecting in the background. Closed with the app.
 */
export function optionalRedis(app: FastifyInstance, url: string, purpose: string): Redis | undefined {
  if (!url) return undefined
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: 250,
    connectTimeout: 2000,
  })
  redis.on('error', (error) => app.log.warn({ err: error }, `${purpose} (Redis) error`))
  redis.connect().catch((error) => app.log.warn({ err: error }, `${purpose} (Redis) unreachable at start`))
  app.addHook('onClose', async () => {
    await redis.quit().catch(() => redis.disconnect())
  })
  return redis
}
