import { type RedisServer, redisServerAvailable, startRedis } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { call, sleep, startGateway, type TestGateway } from './helpers.js'
import { startUpstream, type TestUpstream } from './upstream-server.js'

const available = redisServerAvailable()

describe.skipIf(!available)('rate limits shared through Redis (REDIS_URL)', () => {
  let redis: RedisServer
  let upstreams: TestUpstream[]
  let a: TestGateway
  let b: TestGateway

  beforeAll(async () => {
    redis = await startRedis()
    upstreams = await Promise.all(
      ['task-service', 'user-service', 'project-service'].map((name) => startUpstream(name)),
    )
    const env = {
      AUTH_MODE: 'disabled',
      REDIS_URL: redis.url,
      RATE_LIMIT_READS_PER_MINUTE: '6',
      TASK_SERVICE_URL: upstreams[0]?.url as string,
      USER_SERVICE_URL: upstreams[1]?.url as string,
      PROJECT_SERVICE_URL: upstreams[2]?.url as string,
    }
    // Two replicas of the gateway, one store.
    a = await startGateway(env)
    b = await startGateway(env)
    await sleep(100)
  })

  afterAll(async () => {
    await a?.close()
    await b?.close()
    await Promise.all(upstreams.map((upstream) => upstream.close()))
    await redis?.stop('SIGKILL')
  })

  test('two gateway replicas draw from one budget per client', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) statuses.push((await call(`${a.url}/tasks`)).status)
    for (let i = 0; i < 2; i++) statuses.push((await call(`${b.url}/tasks`)).status)
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200])
    const limitedOnB = await call(`${b.url}/tasks`)
    expect(limitedOnB.status).toBe(429)
    expect(limitedOnB.headers['ratelimit-limit']).toBe('6')
    expect((await call(`${a.url}/tasks`)).status).toBe(429)
    // Another budget is untouched.
    expect((await call(`${a.url}/tasks`, { method: 'POST', body: '{}' })).status).toBe(200)
  })

  test('when Redis goes away the gateway keeps serving (limits pause) instead of failing requests', async () => {
    await redis.stop('SIGKILL')
    await sleep(200)
    const res = await call(`${a.url}/projects/1`)
    expect(res.status).toBe(200)
    expect(res.ms).toBeLessThan(1000)
  })
})
