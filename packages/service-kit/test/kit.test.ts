import { execFileSync } from 'node:child_process'
import { Writable } from 'node:stream'
import {
  createDatabase,
  createServer,
  databasePlugin,
  HttpProblem,
  loadConfig,
  serviceKit,
} from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import Fastify from 'fastify'
import { Counter } from 'prom-client'
import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { BaseConfigProperties, ConfigError } from '../src/config.js'
import { serverOptions } from '../src/kit.js'
import { loggerOptions, requestIdFrom } from '../src/logger.js'

const database = useTestDatabase()
const identity = { service: 'kit-test', version: '1.2.3' }

function hasPromtool(): boolean {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

async function buildKitApp(databaseUrl: string) {
  const app = createServer(identity, { LOG_LEVEL: 'silent' })
  await app.register(serviceKit, identity)
  await app.register(databasePlugin, {
    database: createDatabase({ connectionString: databaseUrl, connectionTimeoutMs: 500 }),
  })
  app.post(
    '/echo',
    { schema: { body: Type.Object({ name: Type.String({ minLength: 2 }) }) } },
    async (request) => request.body,
  )
  app.get('/items/:id', async (request) => request.params)
  app.delete('/items/:id', async () => null)
  app.get('/boom', async () => {
    throw new Error('secret connection string postgres://admin:hunter2@db')
  })
  app.get('/teapot', async () => {
    throw new HttpProblem(418, 'I am a teapot', { headers: { 'x-extra': 'yes' } })
  })
  await app.ready()
  return app
}

describe('config', () => {
  const schema = Type.Object({ ...BaseConfigProperties, PORT: Type.Integer({ minimum: 1, maximum: 65535 }) })

  test('defaults apply and strings are coerced', () => {
    const config = loadConfig(schema, { PORT: '8080' })
    expect(config).toMatchObject({ PORT: 8080, HOST: '0.0.0.0', LOG_LEVEL: 'info', AUTH_MODE: 'required' })
  })

  test('a missing variable stops start-up with its name', () => {
    expect(() => loadConfig(schema, {})).toThrow(ConfigError)
    expect(() => loadConfig(schema, {})).toThrow(/PORT/)
  })

  test('a malformed value names the variable', () => {
    expect(() => loadConfig(schema, { PORT: 'eighty' })).toThrow(
      'Invalid configuration: PORT must be integer',
    )
    expect(() => loadConfig(schema, { PORT: '80', REQUEST_TIMEOUT_MS: '5' })).toThrow(
      'Invalid configuration: REQUEST_TIMEOUT_MS must be >= 100',
    )
  })

  test('a value outside a list of choices names the choices, once, and not the value', () => {
    const attempt = () => loadConfig(schema, { PORT: '80', LOG_LEVEL: 'loud', AUTH_MODE: 'off' })
    expect(attempt).toThrow(
      'Invalid configuration: LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent; ' +
        'AUTH_MODE must be one of required, disabled',
    )
    expect(attempt).not.toThrow(/loud|constant|anyOf/)
  })

  test('a missing variable reads as required', () => {
    expect(() => loadConfig(schema, {})).toThrow('Invalid configuration: PORT is required')
  })
})

describe('HTTP edges as problem+json', () => {
  let app: Awaited<ReturnType<typeof buildKitApp>>
  beforeAll(async () => {
    app = await buildKitApp(database.url)
  })
  afterAll(async () => {
    await app?.close()
  })

  const isProblem = (response: { headers: Record<string, unknown> }) =>
    expect(String(response.headers['content-type'])).toMatch(/^application\/problem\+json/)

  test('400 for malformed JSON', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/echo',
      headers: { 'content-type': 'application/json' },
      payload: '{"name": ',
    })
    expect(response.statusCode).toBe(400)
    isProblem(response)
    expect(response.json()).toMatchObject({
      type: 'about:blank',
      title: 'Bad Request',
      status: 400,
      instance: '/echo',
    })
  })

  test('413 for a body over 1 MiB', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/echo',
      payload: { name: 'x'.repeat(1024 * 1024 + 1) },
    })
    expect(response.statusCode).toBe(413)
    isProblem(response)
  })

  test('415 for a content type the route does not take', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/echo',
      headers: { 'content-type': 'text/csv' },
      payload: 'a,b',
    })
    expect(response.statusCode).toBe(415)
    isProblem(response)
  })

  test('422 with field paths for a schema violation', async () => {
    const response = await app.inject({ method: 'POST', url: '/echo', payload: { name: 'x' } })
    expect(response.statusCode).toBe(422)
    expect(response.json().errors).toEqual([
      { in: 'body', field: 'name', message: expect.stringMatching(/fewer than 2/) },
    ])
  })

  test('404 for an unknown route', async () => {
    const response = await app.inject({ url: '/nowhere' })
    expect(response.statusCode).toBe(404)
    isProblem(response)
    expect(response.json().detail).toBe('No route GET /nowhere')
  })

  test('405 with Allow for a known path and the wrong method', async () => {
    const response = await app.inject({ method: 'PUT', url: '/items/7' })
    expect(response.statusCode).toBe(405)
    isProblem(response)
    expect(response.headers.allow).toBe('GET, DELETE, HEAD')
  })

  test('500 carries no internals', async () => {
    const response = await app.inject({ url: '/boom' })
    expect(response.statusCode).toBe(500)
    isProblem(response)
    expect(response.body).not.toMatch(/hunter2|postgres|stack|secret/)
    expect(response.json().detail).toBe('An internal error occurred; it has been logged')
  })

  test('HttpProblem sets status, detail and headers', async () => {
    const response = await app.inject({ url: '/teapot' })
    expect(response.statusCode).toBe(418)
    expect(response.headers['x-extra']).toBe('yes')
    expect(response.json()).toMatchObject({ title: "I'm a Teapot", detail: 'I am a teapot' })
  })
})

describe('request ids', () => {
  let app: Awaited<ReturnType<typeof buildKitApp>>
  beforeAll(async () => {
    app = await buildKitApp(database.url)
  })
  afterAll(async () => {
    await app?.close()
  })

  test('a sane x-request-id is taken and echoed; otherwise a new one is made', async () => {
    const given = await app.inject({ url: '/health/live', headers: { 'x-request-id': 'abc-123' } })
    expect(given.headers['x-request-id']).toBe('abc-123')
    const made = await app.inject({ url: '/health/live' })
    expect(made.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
    const hostile = await app.inject({ url: '/health/live', headers: { 'x-request-id': 'evil\nlog line' } })
    expect(hostile.headers['x-request-id']).not.toContain('evil')
  })

  test('requestIdFrom ignores ids that are too long', () => {
    const id = requestIdFrom({ headers: { 'x-request-id': 'a'.repeat(200) } } as never)
    expect(id).toHaveLength(36)
  })
})

describe('logs', () => {
  test('JSON lines with the request id; authorization headers and passwords redacted', async () => {
    const lines: string[] = []
    const stream = new Writable({
      write(chunk, _encoding, callback) {
        lines.push(chunk.toString())
        callback()
      },
    })
    const options = serverOptions(identity, { LOG_LEVEL: 'info' })
    const logged = Fastify({
      ...options,
      logger: { ...(loggerOptions('kit-test', 'info') as object), stream } as never,
    })
    logged.post('/login', async (request) => {
      request.log.info({ headers: request.headers, body: request.body }, 'login attempt')
      return { ok: true }
    })
    await logged.inject({
      method: 'POST',
      url: '/login',
      headers: { authorization: 'Bearer top-secret-token', 'x-request-id': 'req-42' },
      payload: { email: 'a@b.c', password: 'correct horse battery' },
    })
    await logged.close()
    const text = lines.join('')
    expect(text).not.toContain('top-secret-token')
    expect(text).not.toContain('correct horse battery')
    const entry = JSON.parse(lines.find((line) => line.includes('login attempt')) as string)
    expect(entry).toMatchObject({
      level: 'info',
      service: 'kit-test',
      request_id: 'req-42',
      msg: 'login attempt',
    })
    expect(entry.headers.authorization).toBe('[redacted]')
    expect(entry.body.password).toBe('[redacted]')
  })
})

describe('health and readiness', () => {
  test('live and ready answer 200 with a reachable database', async () => {
    const app = await buildKitApp(database.url)
    expect((await app.inject({ url: '/health/live' })).json()).toEqual({ status: 'ok' })
    const ready = await app.inject({ url: '/health/ready' })
    expect(ready.statusCode).toBe(200)
    expect(ready.json()).toEqual({ status: 'ready', checks: { database: 'ok' } })
    expect((await app.inject({ url: '/health' })).json()).toMatchObject({
      status: 'healthy',
      service: 'kit-test',
    })
    app.readiness.shuttingDown = true
    const draining = await app.inject({ url: '/health/ready' })
    expect(draining.statusCode).toBe(503)
    expect(draining.json().status).toBe('shutting_down')
    expect((await app.inject({ url: '/health/live' })).statusCode).toBe(200)
    await app.close()
  })

  test('ready answers 503 while the database is unreachable; live stays 200', async () => {
    const app = await buildKitApp('postgres://nobody:x@127.0.0.1:9/none')
    const ready = await app.inject({ url: '/health/ready' })
    expect(ready.statusCode).toBe(503)
    expect(ready.json()).toEqual({ status: 'not_ready', checks: { database: 'down' } })
    expect((await app.inject({ url: '/health' })).json()).toMatchObject({
      status: 'unhealthy',
      service: 'kit-test',
    })
    expect((await app.inject({ url: '/health/live' })).statusCode).toBe(200)
    await app.close()
  })
})

describe('metrics', () => {
  test('request histogram by method, route template and status code, with a service label', async () => {
    const app = await buildKitApp(database.url)
    await app.inject({ url: '/items/1' })
    await app.inject({ url: '/items/2' })
    await app.inject({ url: '/nowhere/123' })
    const response = await app.inject({ url: '/metrics' })
    expect(response.statusCode).toBe(200)
    const text = response.body
    const count = text
      .split('\n')
      .find(
        (line) =>
          line.startsWith('http_server_request_duration_seconds_count') &&
          line.includes('route="/items/:id"'),
      )
    expect(count).toBeDefined()
    for (const label of ['method="GET"', 'status_code="200"', 'service="kit-test"'])
      expect(count).toContain(label)
    expect(count?.endsWith(' 2')).toBe(true)
    expect(text).toMatch(/route="unmatched",status_code="404"/)
    expect(text).not.toMatch(/\/nowhere\/123/)
    expect(text).toMatch(/process_resident_memory_bytes\{service="kit-test"\}/)
    await app.close()
  })

  test('OpenMetrics when the scraper asks for it (no exemplars with tracing off), Prometheus text otherwise, counters named alike before and after', async () => {
    const app = await buildKitApp(database.url)
    new Counter({ name: 'kit_test_things_total', help: 'Things', registers: [app.metrics.registry] }).inc(3)
    await app.inject({ url: '/items/1' })
    const scrape = (accept?: string) =>
      app.inject({ url: '/metrics', headers: accept === undefined ? {} : { accept } })

    const before = await scrape()
    expect(before.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8')
    expect(before.body).toContain(
      '# TYPE kit_test_things_total counter\nkit_test_things_total{service="kit-test"} 3',
    )

    // What Prometheus sends with exemplar storage on.
    const open = await scrape(
      'application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2',
    )
    expect(open.headers['content-type']).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8')
    expect(open.body.endsWith('# EOF\n')).toBe(true)
    // OpenMetrics names the counter family without _total and its sample with it.
    expect(open.body).toContain('# TYPE kit_test_things counter\nkit_test_things_total{service="kit-test"} 3')
    expect(open.body).toMatch(/^http_server_request_duration_seconds_bucket\{.*route="\/items\/:id".*\} 1$/m)
    // Tracing is off in this process: the histogram carries no exemplars.
    expect(open.body).not.toContain(' # {')

    // prom-client renames counters in place while writing OpenMetrics: the next Prometheus scrape is unchanged.
    const after = await scrape('text/plain')
    expect(after.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8')
    const counters = (body: string) => [...body.matchAll(/^# TYPE (\S+) counter$/gm)].map((m) => m[1]).sort()
    expect(counters(before.body).length).toBeGreaterThan(1)
    expect(counters(after.body)).toEqual(counters(before.body))
    expect(after.body).toContain('kit_test_things_total{service="kit-test"} 3')
    await app.close()
  })

  test.skipIf(!hasPromtool() && !process.env.REQUIRE_PROMTOOL)(
    'the exposition passes promtool check metrics',
    async () => {
      const app = await buildKitApp(database.url)
      await app.inject({ url: '/items/1' })
      const { body } = await app.inject({ url: '/metrics' })
      await app.close()
      const output = execFileSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' })
      expect(output).not.toMatch(/error/i)
    },
  )
})
