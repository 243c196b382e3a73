import type { App } from '@task-manager/service-kit'
import { type RedisServer, redisServerAvailable, startRedis, useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { buildApp, PASSWORD, uniqueEmail } from './helpers.js'

const available = redisServerAvailable()

const database = useTestDatabase('users')

describe.skipIf(!available)('login limits shared by replicas through Redis (REDIS_URL)', () => {
  let redis: RedisServer
  let replicas: App[]

  beforeAll(async () => {
    redis = await startRedis()
    const env = {
      REDIS_URL: redis.url,
      LOGIN_FAILURES_PER_EMAIL: '3',
      LOGIN_RATE_LIMIT_PER_CLIENT: '6',
    }
    replicas = [await buildApp(database.url, env), await buildApp(database.url, env)]
    // Wait until both replicas count in Redis (they connect in the background). Until then the limiter
    // skips the store and reports the full budget (6) remaining; once counted, fewer.
    for (const [index, replica] of replicas.entries()) {
      const deadline = Date.now() + 5000
      for (;;) {
        const probe = await replica.inject({
          method: 'POST',
          url: '/auth/token',
          headers: { 'x-forwarded-for': `192.0.2.${250 + index}` },
          payload: { email: 'probe@example.test', password: 'x' },
        })
        if (probe.headers['x-ratelimit-remaining'] !== '6') break
        if (Date.now() > deadline) throw new Error('replica never reached Redis')
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
  })
  afterAll(async () => {
    for (const replica of replicas ?? []) await replica.close()
    await redis?.stop()
  })

  const attempt = (replica: App | undefined, email: string, password: string, ip: string) =>
    (replica as App).inject({
      method: 'POST',
      url: '/auth/token',
      headers: { 'x-forwarded-for': ip },
      payload: { email, password },
    })

  test('failed logins for one email on different replicas add up to one lock', async () => {
    const email = uniqueEmail()
    await replicas[0]?.inject({
      method: 'POST',
      url: '/users',
      payload: { email, name: 'R', password: PASSWORD },
    })
    expect((await attempt(replicas[0], email, 'wrong password 1', '198.51.100.21')).statusCode).toBe(401)
    expect((await attempt(replicas[1], email, 'wrong password 2', '198.51.100.22')).statusCode).toBe(401)
    expect((await attempt(replicas[0], email, 'wrong password 3', '198.51.100.23')).statusCode).toBe(401)
    const locked = await attempt(replicas[1], email, PASSWORD, '198.51.100.24')
    expect(locked.statusCode).toBe(429)
    expect(Number(locked.headers['retry-after'])).toBeGreaterThan(0)
  })

  test('one client’s attempts on different replicas share one budget', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 8; i += 1) {
      const replica = replicas[i % 2]
      statuses.push(
        (await attempt(replica, uniqueEmail('spray'), 'password spray!', '198.51.100.99')).statusCode,
      )
    }
    expect(statuses).toEqual([401, 401, 401, 401, 401, 401, 429, 429])
  })

  test('with Redis gone, logins keep working (limits are skipped, not fatal)', async () => {
    await redis.stop()
    const email = uniqueEmail()
    await replicas[0]?.inject({
      method: 'POST',
      url: '/users',
      payload: { email, name: 'R', password: PASSWORD },
    })
    const response = await attempt(replicas[1], email, PASSWORD, '198.51.100.30')
    expect(response.statusCode).toBe(200)
  })
})
