import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { call, startGateway, type TestGateway, testIssuer } from './helpers.js'
import { startServices, type TestServices } from './upstream-server.js'

let services: TestServices
let issuer: Awaited<ReturnType<typeof testIssuer>>

beforeAll(async () => {
  issuer = await testIssuer()
  // The user-service publishes the issuer's keys; the gateway finds them at USER_SERVICE_URL/.well-known/jwks.json.
  services = await startServices(issuer.jwks)
})
afterAll(async () => {
  await services?.close()
})

const gateways: TestGateway[] = []
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((gateway) => gateway.close()))
})

async function gatewayWith(env: Record<string, string>) {
  const gateway = await startGateway({
    AUTH_MODE: 'disabled',
    ...services.env,
    RATE_LIMIT_READS_PER_MINUTE: '5',
    RATE_LIMIT_WRITES_PER_MINUTE: '3',
    RATE_LIMIT_CREATES_PER_MINUTE: '2',
    RATE_LIMIT_LOGIN_PER_MINUTE: '2',
    ...env,
  })
  gateways.push(gateway)
  return gateway
}

describe('rate limits', () => {
  test('reads: the budget is spent, then 429 problem+json with Retry-After and RateLimit headers', async () => {
    const gateway = await gatewayWith({})
    const before = services.tasks.requests.length
    for (let i = 1; i <= 5; i++) {
      const res = await call(`${gateway.url}/tasks`)
      expect(res.status).toBe(200)
      expect(res.headers['ratelimit-limit']).toBe('5')
      expect(res.headers['ratelimit-remaining']).toBe(String(5 - i))
    }
    const limited = await call(`${gateway.url}/tasks`)
    expect(limited.status).toBe(429)
    expect(limited.headers['content-type']).toMatch(/application\/problem\+json/)
    expect(limited.json).toMatchObject({ status: 429, type: 'urn:task-manager:problem:rate-limited' })
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0)
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60)
    expect(limited.headers['ratelimit-remaining']).toBe('0')
    expect(services.tasks.requests.length - before).toBe(5)

    // Probes and scrapes are never limited; the metric counts the refusal.
    for (let i = 0; i < 10; i++) expect((await call(`${gateway.url}/health/live`)).status).toBe(200)
    const metrics = await call(`${gateway.url}/metrics`)
    expect(metrics.text).toMatch(/gateway_rate_limited_total\{[^}]*budget="reads"[^}]*\} 1\b/)
  })

  test('reads, writes, creates and logins have separate budgets', async () => {
    const gateway = await gatewayWith({})
    const statuses = async (method: string, path: string, count: number) => {
      const out: number[] = []
      for (let i = 0; i < count; i++) {
        out.push(
          (await call(`${gateway.url}${path}`, { method, body: method === 'GET' ? undefined : '{}' })).status,
        )
      }
      return out
    }
    expect(await statuses('GET', '/tasks', 6)).toEqual([200, 200, 200, 200, 200, 429])
    expect(await statuses('PUT', '/tasks/1', 4)).toEqual([200, 200, 200, 429])
    expect(await statuses('POST', '/tasks', 3)).toEqual([200, 200, 429])
    expect(await statuses('POST', '/auth/token', 3)).toEqual([200, 200, 429])
    // Writes and deletes share the write budget, already spent.
    expect(await statuses('DELETE', '/tasks/1', 1)).toEqual([429])
  })

  test('behind a trusted proxy each X-Forwarded-For client has its own budget, and the chain goes upstream', async () => {
    const gateway = await gatewayWith({ TRUST_PROXY: '127.0.0.1' })
    const as = (client: string) =>
      call(`${gateway.url}/projects/1`, { headers: { 'x-forwarded-for': client } })
    for (let i = 0; i < 5; i++) expect((await as('203.0.113.1')).status).toBe(200)
    expect((await as('203.0.113.1')).status).toBe(429)
    const other = await as('203.0.113.2')
    expect(other.status).toBe(200)
    // What goes upstream is the gateway's view: the client address it settled on, not the chain it was sent.
    expect(other.json.headers['x-forwarded-for']).toBe('203.0.113.2')
  })

  test('from an untrusted peer X-Forwarded-For is ignored for the budget and not passed on', async () => {
    const gateway = await gatewayWith({ TRUST_PROXY: 'false' })
    for (let i = 0; i < 5; i++) {
      const res = await call(`${gateway.url}/projects/1`, {
        headers: { 'x-forwarded-for': `198.51.100.${i}` },
      })
      expect(res.status).toBe(200)
      expect(res.json.headers['x-forwarded-for']).toBe('127.0.0.1')
    }
    const spoofed = await call(`${gateway.url}/projects/1`, {
      headers: { 'x-forwarded-for': '198.51.100.99' },
    })
    expect(spoofed.status).toBe(429)
  })

  test('a client rotating X-Forwarded-For on logins stays in one bucket, and the user-service sees one address', async () => {
    // The default: no proxy is trusted; the client is its TCP peer.
    const gateway = await gatewayWith({})
    const before = services.users.requests.length
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) {
      const res = await call(`${gateway.url}/auth/token`, {
        method: 'POST',
        body: '{}',
        headers: {
          'x-forwarded-for': `203.0.113.${i}`,
          'x-real-ip': `203.0.113.${i}`,
          forwarded: `for=203.0.113.${i}`,
        },
      })
      statuses.push(res.status)
    }
    expect(statuses).toEqual([200, 200, 429, 429])
    // What the user-service keys its own login limits by is the gateway's view, the same for every attempt.
    const seen = services.users.requests.slice(before)
    expect(seen.map((request) => request.headers['x-forwarded-for'])).toEqual(['127.0.0.1', '127.0.0.1'])
    expect(
      seen.every(
        (request) => request.headers['x-real-ip'] === undefined && request.headers.forwarded === undefined,
      ),
    ).toBe(true)
  })

  test('an authenticated client is limited by its subject, wherever it calls from', async () => {
    const gateway = await gatewayWith({ AUTH_MODE: 'required', TRUST_PROXY: '127.0.0.1' })
    const alice = await issuer.sign('1')
    const bob = await issuer.sign('2')
    const as = (token: string, ip: string) =>
      call(`${gateway.url}/tasks`, { headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': ip } })
    // A token's first request, before it is verified, counts against the client's address (so bad tokens are
    // limited like any other traffic); once verified, Alice spends her own budget from five different addresses...
    expect((await as(alice, '192.0.2.100')).status).toBe(200)
    for (let i = 0; i < 5; i++) expect((await as(alice, `192.0.2.${i}`)).status).toBe(200)
    expect((await as(alice, '192.0.2.200')).status).toBe(429)
    // ...while Bob, from the very same address, still has his.
    expect((await as(bob, '192.0.2.200')).status).toBe(200)
  })
})

describe('CORS', () => {
  const allowed = 'http://localhost:5173'

  test('a configured origin is allowed; the answer exposes the headers clients need', async () => {
    const gateway = await gatewayWith({})
    const res = await call(`${gateway.url}/tasks`, { headers: { origin: allowed } })
    expect(res.status).toBe(200)
    expect(res.headers['access-control-allow-origin']).toBe(allowed)
    expect(res.headers.vary).toMatch(/origin/i)
    expect(res.headers['access-control-expose-headers']).toContain('x-request-id')
    expect(res.headers['access-control-expose-headers']).toContain('retry-after')
  })

  test('another origin gets no CORS grant', async () => {
    const gateway = await gatewayWith({})
    const res = await call(`${gateway.url}/tasks`, { headers: { origin: 'https://evil.example' } })
    expect(res.headers['access-control-allow-origin']).toBeUndefined()
  })

  test('a preflight is answered at the edge, cached, and never reaches a service', async () => {
    const gateway = await gatewayWith({ AUTH_MODE: 'required', CORS_ORIGINS: 'https://app.example.com' })
    const before = services.tasks.requests.length
    const preflight = await call(`${gateway.url}/tasks/1`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example.com',
        'access-control-request-method': 'PATCH',
        'access-control-request-headers': 'authorization, content-type, if-match',
      },
    })
    expect(preflight.status).toBe(204)
    expect(preflight.headers['access-control-allow-origin']).toBe('https://app.example.com')
    expect(preflight.headers['access-control-allow-methods']).toContain('PATCH')
    expect(preflight.headers['access-control-allow-headers']).toContain('authorization')
    expect(preflight.headers['access-control-max-age']).toBe('600')

    const denied = await call(`${gateway.url}/tasks/1`, {
      method: 'OPTIONS',
      headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'PATCH' },
    })
    expect(denied.headers['access-control-allow-origin']).toBeUndefined()
    expect(services.tasks.requests.length).toBe(before)

    // Errors carry the grant too, so a browser can read the 401.
    const unauthorized = await call(`${gateway.url}/tasks`, {
      headers: { origin: 'https://app.example.com' },
    })
    expect(unauthorized.status).toBe(401)
    expect(unauthorized.headers['access-control-allow-origin']).toBe('https://app.example.com')
  })
})
