import { Readable } from 'node:stream'
import { freePort } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { call, rawRequest, startGateway, type TestGateway } from './helpers.js'
import { startServices, startUpstream, type TestServices } from './upstream-server.js'

let services: TestServices
let gateway: TestGateway

beforeAll(async () => {
  services = await startServices()
  gateway = await startGateway({
    AUTH_MODE: 'disabled',
    RATE_LIMIT_ENABLED: 'false',
    ...services.env,
    HEALTH_TIMEOUT_MS: '300',
  })
})

afterAll(async () => {
  await gateway.close()
  await services?.close()
})

describe('routing', () => {
  test.each([
    ['/tasks', 'task-service'],
    ['/tasks/42?user_id=7', 'task-service'],
    ['/tasks/42/status', 'task-service'],
    ['/projects', 'project-service'],
    ['/projects/3/members/9', 'project-service'],
    ['/users', 'user-service'],
    ['/users/me', 'user-service'],
    ['/auth/token', 'user-service'],
    ['/.well-known/jwks.json', 'user-service'],
  ])('%s goes to %s with path and query unchanged', async (path, service) => {
    const res = await call(`${gateway.url}${path}`)
    expect(res.status).toBe(200)
    expect(res.json.service).toBe(service)
    expect(res.json.url).toBe(path)
  })

  test('every method the API uses is proxied, bodies included', async () => {
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      const body = JSON.stringify({ title: 'x'.repeat(100) })
      const res = await call(`${gateway.url}/tasks/1`, {
        method,
        body,
        headers: { 'content-type': 'application/json' },
      })
      expect(res.status).toBe(200)
      expect(res.json).toMatchObject({ service: 'task-service', method, bodyBytes: Buffer.byteLength(body) })
    }
  })

  test('an unknown route is 404 problem+json and reaches no service', async () => {
    const before =
      services.tasks.requests.length + services.users.requests.length + services.projects.requests.length
    const res = await call(`${gateway.url}/nothing-here`)
    expect(res.status).toBe(404)
    expect(res.headers['content-type']).toMatch(/application\/problem\+json/)
    expect(res.json).toMatchObject({ status: 404, title: 'Not Found' })
    expect(
      services.tasks.requests.length + services.users.requests.length + services.projects.requests.length,
    ).toBe(before)
  })

  test('a prefix lookalike is not routed (/tasksfoo)', async () => {
    const res = await call(`${gateway.url}/tasksfoo`)
    expect(res.status).toBe(404)
  })
})

describe('original gateway contract', () => {
  test('GET / describes the gateway and its services: a path per service, no internal address', async () => {
    const res = await call(`${gateway.url}/`)
    expect(res.status).toBe(200)
    expect(res.json).toEqual({
      service: 'api-gateway',
      version: expect.any(String),
      architecture: 'microservices',
      services: { tasks: '/tasks', users: '/users', projects: '/projects' },
    })
    expect(res.text).not.toContain('127.0.0.1')
  })

  test('GET /health reports each service: healthy, unhealthy, unreachable — within the check timeout', async () => {
    let res = await call(`${gateway.url}/health`)
    expect(res.status).toBe(200)
    expect(res.json).toEqual({
      gateway: 'healthy',
      services: { 'task-service': 'healthy', 'user-service': 'healthy', 'project-service': 'healthy' },
    })

    services.users.ready = 503
    // The project-service stalls its probe: checked in parallel, so the answer takes one timeout, not three.
    services.projects.behave((req) => req.url === '/health/ready')
    res = await call(`${gateway.url}/health`)
    expect(res.json.services).toEqual({
      'task-service': 'healthy',
      'user-service': 'unhealthy',
      'project-service': 'unreachable',
    })
    expect(res.ms).toBeLessThan(1000)
    services.users.ready = 200
    services.projects.behave(undefined)
  })

  test('the kit probes and metrics stay available', async () => {
    expect((await call(`${gateway.url}/health/live`)).status).toBe(200)
    expect((await call(`${gateway.url}/health/ready`)).status).toBe(200)
    const metrics = await call(`${gateway.url}/metrics`)
    expect(metrics.text).toMatch(
      /gateway_upstream_request_duration_seconds_count\{[^}]*upstream="task-service",route="\/tasks\/\*",method="GET",status_code="200"[^}]*\} [1-9]/,
    )
    expect(metrics.text).toMatch(/gateway_circuit_breaker_state\{[^}]*upstream="task-service"[^}]*\} 0/)
  })
})

describe('headers', () => {
  test('identity headers from clients are stripped; Authorization, traceparent and x-request-id pass on', async () => {
    const res = await call(`${gateway.url}/tasks/1`, {
      headers: {
        authorization: 'Bearer abc.def.ghi',
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        'x-request-id': 'req-123',
        'x-user-id': '1',
        'x-user-role': 'admin',
        'x-auth-subject': '1',
        'x-internal-caller': 'task-service',
        'x-forwarded-user': 'admin',
        'x-custom': 'kept',
      },
    })
    const seen = res.json.headers as Record<string, string>
    expect(seen.authorization).toBe('Bearer abc.def.ghi')
    expect(seen.traceparent).toBe('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')
    expect(seen['x-request-id']).toBe('req-123')
    expect(res.headers['x-request-id']).toBe('req-123')
    expect(seen['x-custom']).toBe('kept')
    for (const name of [
      'x-user-id',
      'x-user-role',
      'x-auth-subject',
      'x-internal-caller',
      'x-forwarded-user',
    ]) {
      expect(seen[name], name).toBeUndefined()
    }
  })

  test('a request without x-request-id gets one, the same upstream and in the answer', async () => {
    const res = await call(`${gateway.url}/tasks/1`)
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
    expect(res.json.headers['x-request-id']).toBe(res.headers['x-request-id'])
  })

  test('X-Forwarded-For/Proto/Host are set', async () => {
    const res = await call(`${gateway.url}/tasks/1`, { headers: { host: 'api.example.test' } })
    expect(res.json.headers['x-forwarded-for']).toBe('127.0.0.1')
    expect(res.json.headers['x-forwarded-proto']).toBe('http')
    expect(res.json.headers['x-forwarded-host']).toBe('api.example.test')
  })

  test('hop-by-hop headers are dropped both ways, including those named in Connection', async () => {
    const res = await rawRequest(
      gateway.url,
      `GET /tasks/1 HTTP/1.1
Host: gateway.test
Connection: x-hop-secret
X-Hop-Secret: do not forward
TE: trailers
Proxy-Authorization: Basic Zm9vOmJhcg==
Keep-Alive: timeout=5
Upgrade: h2c`,
    )
    expect(res.status).toBe(200)
    const seen = JSON.parse(res.body).headers as Record<string, string>
    for (const name of ['x-hop-secret', 'te', 'proxy-authorization', 'keep-alive', 'upgrade']) {
      expect(seen[name], name).toBeUndefined()
    }
    // The upstream answered with Keep-Alive and a header named in its Connection field.
    expect(res.headers['x-upstream-private']).toBeUndefined()
    expect(res.headers['keep-alive']).toBeUndefined()
  })
})

describe('request size', () => {
  test('a body over 1 MiB with Content-Length is refused with 413 before any service sees it', async () => {
    const before = services.tasks.requests.length
    const res = await call(`${gateway.url}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Buffer.alloc(1024 * 1024 + 1, 0x61),
    })
    expect(res.status).toBe(413)
    expect(res.headers['content-type']).toMatch(/application\/problem\+json/)
    expect(services.tasks.requests.length).toBe(before)
  })

  test('a chunked body over 1 MiB is refused with 413 before any service sees it; 1 MiB exactly passes', async () => {
    const { request } = await import('undici')
    const before = services.tasks.requests.length
    async function* chunks(total: number) {
      const chunk = Buffer.alloc(64 * 1024, 0x61)
      for (let sent = 0; sent < total; sent += chunk.length)
        yield chunk.subarray(0, Math.min(chunk.length, total - sent))
    }
    const tooBig = await request(`${gateway.url}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: Readable.from(chunks(1024 * 1024 + 10)),
    }).catch((error: Error) => error)
    if (!(tooBig instanceof Error)) {
      expect(tooBig.statusCode).toBe(413)
      await tooBig.body.text()
    }
    expect(services.tasks.requests.length).toBe(before)

    const fits = await request(`${gateway.url}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: Readable.from(chunks(1024 * 1024)),
    })
    expect(fits.statusCode).toBe(200)
    expect(((await fits.body.json()) as { bodyBytes: number }).bodyBytes).toBe(1024 * 1024)
  })
})

describe('the API document', () => {
  test('/openapi.json is composed from the services’ own documents, with what the gateway answers itself', async () => {
    const { tasks, users, projects } = services
    const problem = { type: 'object', properties: { detail: { type: 'string' } } }
    const documentOf = (paths: Record<string, unknown>, schemas: Record<string, unknown>) =>
      JSON.stringify({ openapi: '3.1.0', info: { title: 's', version: '1' }, paths, components: { schemas } })
    const serve =
      (body: string) =>
      (req: { url?: string }, res: import('node:http').ServerResponse): boolean => {
        if (req.url !== '/openapi.json') return false
        res.writeHead(200, { 'content-type': 'application/json' }).end(body)
        return true
      }
    const ok = {
      description: 'ok',
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Item' } } },
    }
    tasks.behave(
      serve(
        documentOf(
          { '/tasks': { get: { responses: { 200: ok } } } },
          { Item: { type: 'integer' }, Problem: problem },
        ),
      ),
    )
    projects.behave(
      serve(
        documentOf(
          {
            '/projects/{id}': { get: { responses: { 200: ok, 404: { description: 'no' } } } },
            '/memberships': { get: { responses: { 200: ok } } },
          },
          { Item: { type: 'string' }, Problem: problem },
        ),
      ),
    )
    users.behave(serve(documentOf({}, {})))
    try {
      const doc = (await call(`${gateway.url}/openapi.json`)).json
      expect(Object.keys(doc.paths).sort()).toEqual(['/', '/health', '/projects/{id}', '/tasks'])
      // Same name, other content: the second is renamed, and its references follow.
      expect(doc.components.schemas.Item).toEqual({ type: 'integer' })
      expect(doc.components.schemas['project-service.Item']).toEqual({ type: 'string' })
      const project = doc.paths['/projects/{id}'].get.responses
      expect(project['200'].content['application/json'].schema.$ref).toBe(
        '#/components/schemas/project-service.Item',
      )
      for (const status of ['404', '429', '502', '503', '504']) {
        expect(project[status].content, status).toEqual({
          'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } },
        })
      }
      // AUTH_MODE=disabled here: the gateway checks no token, so it adds no 401.
      expect(project['401']).toBeUndefined()
    } finally {
      for (const upstream of [tasks, users, projects]) upstream.behave(undefined)
    }
  })
})

describe('a starting gateway', () => {
  test('is not ready until it has reached every service once; then a service outage never makes it unready', async () => {
    const port = await freePort()
    const others = await startServices()
    const starting = await startGateway({
      AUTH_MODE: 'disabled',
      ...others.env,
      // Nothing listens here yet: as a new pod whose connections are still refused.
      TASK_SERVICE_URL: `http://127.0.0.1:${port}`,
      STARTUP_UPSTREAM_WAIT_MS: '600000',
    })
    try {
      const before = await call(`${starting.url}/health/ready`)
      expect(before.status).toBe(503)
      expect(before.json.checks['services-reached']).toBe('down')
      const tasks = await startUpstream('task-service', { port })
      try {
        expect((await call(`${starting.url}/health/ready`)).status).toBe(200)
        // Reached once: the service going away later is the breakers' business, not readiness's.
        await tasks.close()
        expect((await call(`${starting.url}/health/ready`)).status).toBe(200)
      } finally {
        await tasks.close().catch(() => {})
      }
    } finally {
      await starting.close()
      await others.close()
    }
  })

  test('is ready after STARTUP_UPSTREAM_WAIT_MS even when a service was never reached', async () => {
    const others = await startServices()
    const starting = await startGateway({
      AUTH_MODE: 'disabled',
      ...others.env,
      TASK_SERVICE_URL: `http://127.0.0.1:${await freePort()}`,
      STARTUP_UPSTREAM_WAIT_MS: '10',
    })
    try {
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect((await call(`${starting.url}/health/ready`)).status).toBe(200)
    } finally {
      await starting.close()
      await others.close()
    }
  })
})
