import { createServer, serviceKit } from '@task-manager/service-kit'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'

const identity = { service: 'probes-test', version: '0' }

/** Keeps this process's event loop busy in 100 ms slices for `ms`, so the load-shedding sampler sees the lag. */
async function lag(ms: number): Promise<void> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    const slice = Date.now() + 100
    while (Date.now() < slice) {}
    await new Promise((resolve) => setImmediate(resolve))
  }
}

describe('load shedding spares probes and scrapes', () => {
  const app = createServer(identity, { LOG_LEVEL: 'silent' })

  beforeAll(async () => {
    await app.register(serviceKit, { ...identity, maxEventLoopDelayMs: 20 })
    app.get('/work', async () => ({ done: true }))
    await app.ready()
  })
  afterAll(() => app.close())

  test('while the event loop lags, /work gets 503 but /health/live, /health/ready, /health and /metrics answer 200', async () => {
    // The sampler measures about once a second: lag until it has seen it, then ask while the lag lasts.
    await lag(1200)
    const paths = ['/work', '/health/live', '/health/ready', '/health', '/metrics']
    const [responses] = await Promise.all([Promise.all(paths.map((url) => app.inject({ url }))), lag(300)])
    const statuses = Object.fromEntries(paths.map((path, i) => [path, responses[i]?.statusCode]))
    expect(statuses).toEqual({
      '/work': 503,
      '/health/live': 200,
      '/health/ready': 200,
      '/health': 200,
      '/metrics': 200,
    })
  })
})
