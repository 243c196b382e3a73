import { connect } from 'node:net'
import { createServer, serviceKit } from '@task-manager/service-kit'
import { freePort } from '@task-manager/testing'
import { request } from 'undici'
import { describe, expect, test } from 'vitest'

const identity = { service: 'server-test', version: '0' }

describe('the kit’s server', () => {
  test('METRICS_PORT: /metrics on a port of its own, and none on the service port', async () => {
    const metricsPort = await freePort()
    const app = createServer(identity, { LOG_LEVEL: 'silent', HOST: '127.0.0.1', METRICS_PORT: metricsPort })
    await app.register(serviceKit, identity)
    app.get('/hello', async () => ({ hello: 'world' }))
    await app.listen({ host: '127.0.0.1', port: 0 })
    try {
      const { port } = app.server.address() as { port: number }
      expect((await (await request(`http://127.0.0.1:${port}/hello`)).body.json()) as object).toEqual({
        hello: 'world',
      })
      const onServicePort = await request(`http://127.0.0.1:${port}/metrics`)
      expect(onServicePort.statusCode).toBe(404)
      await onServicePort.body.dump()
      const scraped = await request(`http://127.0.0.1:${metricsPort}/metrics`)
      expect(scraped.statusCode).toBe(200)
      const text = await scraped.body.text()
      expect(text).toMatch(/http_server_request_duration_seconds_count\{[^}]*route="\/hello"[^}]*\} 1/)
      const other = await request(`http://127.0.0.1:${metricsPort}/hello`)
      expect(other.statusCode).toBe(404)
      await other.body.dump()
    } finally {
      await app.close()
    }
    // Closed with the app: a new connection is refused.
    const refused = await new Promise<string>((resolve) => {
      const socket = connect(metricsPort, '127.0.0.1')
      socket.once('connect', () => resolve('connected'))
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'))
    })
    expect(refused).toBe('ECONNREFUSED')
  })

  test('a request whose headers never finish gets 408 problem+json at REQUEST_HEADERS_TIMEOUT_MS', async () => {
    const app = createServer(identity, {
      LOG_LEVEL: 'silent',
      REQUEST_HEADERS_TIMEOUT_MS: 500,
      REQUEST_TIMEOUT_MS: 1000,
    })
    await app.register(serviceKit, identity)
    await app.listen({ host: '127.0.0.1', port: 0 })
    try {
      const { port } = app.server.address() as { port: number }
      const socket = connect(port, '127.0.0.1')
      let data = ''
      socket.setEncoding('utf8')
      socket.on('data', (chunk: string) => {
        data += chunk
      })
      const started = performance.now()
      socket.write('GET /health/live HTTP/1.1\r\nHost: x\r\n')
      await new Promise((resolve) => socket.once('close', resolve))
      expect(data).toMatch(/^HTTP\/1\.1 408 /)
      expect(data).toContain('application/problem+json')
      expect(performance.now() - started).toBeLessThan(5000)
    } finally {
      await app.close()
    }
  })
})
