import type { AddressInfo } from 'node:net'
import { Registry } from 'prom-client'
import { request } from 'undici'
import { describe, expect, test } from 'vitest'
import { createServer, RequestHistogram, writeProblem } from '../src/index.js'

describe('front handler', () => {
  test('takes the requests it claims before Fastify; Fastify serves the rest, with its timeouts', async () => {
    const app = createServer({ service: 'front-test', version: '0' }, { LOG_LEVEL: 'silent' })
    app.get('/fastify', async () => ({ from: 'fastify' }))
    app.setFrontHandler((req, res) => {
      if (req.url === '/front') {
        res.writeHead(200, ['content-type', 'application/json'])
        res.end(JSON.stringify({ from: 'front' }))
        return true
      }
      if (req.url?.startsWith('/front/problem')) {
        writeProblem(
          res,
          req.url,
          429,
          'Slow down',
          { type: 'urn:test:slow', headers: { 'retry-after': 3 } },
          ['x-request-id', 'r-1'],
        )
        return true
      }
      return false
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    try {
      expect(await (await request(`${base}/front`)).body.json()).toEqual({ from: 'front' })
      expect(await (await request(`${base}/fastify`)).body.json()).toEqual({ from: 'fastify' })
      const missing = await request(`${base}/nowhere`)
      expect(missing.statusCode).toBe(404)
      await missing.body.dump()

      const problem = await request(`${base}/front/problem?x=1`)
      expect(problem.statusCode).toBe(429)
      expect(problem.headers['content-type']).toBe('application/problem+json; charset=utf-8')
      expect(problem.headers['retry-after']).toBe('3')
      expect(problem.headers['x-request-id']).toBe('r-1')
      expect(await problem.body.json()).toEqual({
        type: 'urn:test:slow',
        title: 'Too Many Requests',
        status: 429,
        detail: 'Slow down',
        instance: '/front/problem',
      })
      expect(app.server.keepAliveTimeout).toBe(72_000)
    } finally {
      await app.close()
    }
  })
})

describe('RequestHistogram', () => {
  test('serves cumulative buckets, sum and count per label set through the registry, default labels included', async () => {
    const registry = new Registry()
    registry.setDefaultLabels({ service: 'h' })
    const histogram = new RequestHistogram({
      name: 'test_duration_seconds',
      help: 'Test durations',
      labelNames: ['route', 'status_code'] as const,
      buckets: [0.1, 0.01, 1],
      registers: [registry],
    })
    const ok = histogram.series({ route: '/a', status_code: '200' })
    for (const value of [0.005, 0.01, 0.05, 0.5, 2]) ok.observe(value)
    histogram.observe({ route: '/a', status_code: '500' }, 0.2)
    expect(histogram.series({ route: '/a', status_code: '200' })).toBe(ok)

    const text = await registry.metrics()
    const lines = text.split('\n').filter((line) => line.startsWith('test_duration_seconds'))
    const value = (prefix: string) =>
      Number(
        lines
          .find((line) => line.startsWith(prefix))
          ?.split(' ')
          .pop(),
      )
    expect(text).toContain('# TYPE test_duration_seconds histogram')
    expect(value('test_duration_seconds_bucket{route="/a",status_code="200",le="0.01"')).toBe(2)
    expect(value('test_duration_seconds_bucket{route="/a",status_code="200",le="0.1"')).toBe(3)
    expect(value('test_duration_seconds_bucket{route="/a",status_code="200",le="1"')).toBe(4)
    expect(value('test_duration_seconds_bucket{route="/a",status_code="200",le="+Inf"')).toBe(5)
    expect(value('test_duration_seconds_count{route="/a",status_code="200"')).toBe(5)
    expect(value('test_duration_seconds_sum{route="/a",status_code="200"')).toBeCloseTo(2.565)
    expect(value('test_duration_seconds_count{route="/a",status_code="500"')).toBe(1)
    expect(lines.every((line) => line.includes('service="h"'))).toBe(true)

    histogram.reset()
    ok.observe(0.5)
    expect(await registry.metrics()).toMatch(
      /test_duration_seconds_count\{route="\/a",status_code="200",service="h"\} 1\n/,
    )
  })
})
