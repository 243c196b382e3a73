import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { call, startGateway, type TestGateway, testIssuer } from './helpers.js'
import { startServices, type TestServices } from './upstream-server.js'

let services: TestServices
let gateway: TestGateway
let issuer: Awaited<ReturnType<typeof testIssuer>>

beforeAll(async () => {
  issuer = await testIssuer()
  // The user-service publishes the issuer's keys; the gateway finds them at USER_SERVICE_URL/.well-known/jwks.json.
  services = await startServices(issuer.jwks)
  gateway = await startGateway({
    AUTH_MODE: 'required',
    RATE_LIMIT_ENABLED: 'false',
    ...services.env,
  })
})

afterAll(async () => {
  await gateway.close()
  await services?.close()
})

const upstreamCalls = () =>
  services.tasks.requests.length + services.projects.requests.length + services.users.requests.length

describe('token verification at the edge (AUTH_MODE=required)', () => {
  test.each([
    ['GET', '/tasks'],
    ['POST', '/tasks'],
    ['GET', '/projects/1'],
    ['GET', '/users/me'],
    ['DELETE', '/tasks/1'],
  ])('%s %s without a token is 401 problem+json and reaches no service', async (method, path) => {
    const before = upstreamCalls()
    const res = await call(`${gateway.url}${path}`, { method, body: method === 'POST' ? '{}' : undefined })
    expect(res.status).toBe(401)
    expect(res.headers['content-type']).toMatch(/application\/problem\+json/)
    expect(res.headers['www-authenticate']).toMatch(/^Bearer realm=/)
    expect(upstreamCalls()).toBe(before)
  })

  test('bad tokens are 401 and reach no service: garbage, foreign key, expired, wrong audience', async () => {
    const foreign = await testIssuer('test-key-1')
    const tokens = [
      'not-a-jwt',
      await foreign.sign('1'),
      await issuer.sign('1', { expiresIn: '-1m' }),
      await issuer.sign('1', { audience: 'someone-else' }),
    ]
    const before = services.tasks.requests.length
    for (const token of tokens) {
      const res = await call(`${gateway.url}/tasks`, { headers: { authorization: `Bearer ${token}` } })
      expect(res.status, token).toBe(401)
      expect(res.headers['www-authenticate']).toContain('error="invalid_token"')
    }
    expect(services.tasks.requests.length).toBe(before)
  })

  test('a valid token passes, and the Authorization header goes on to the service', async () => {
    const token = await issuer.sign('42', { role: 'admin' })
    const res = await call(`${gateway.url}/tasks?user_id=42`, {
      headers: { authorization: `Bearer ${token}` },
    })
    expect(res.status).toBe(200)
    expect(res.json.service).toBe('task-service')
    expect(res.json.headers.authorization).toBe(`Bearer ${token}`)
  })

  test('verified tokens are cached: the keys are fetched once for many requests', async () => {
    const token = await issuer.sign('43')
    const before = services.jwksFetches()
    for (let i = 0; i < 20; i++) {
      expect(
        (await call(`${gateway.url}/projects/1`, { headers: { authorization: `Bearer ${token}` } })).status,
      ).toBe(200)
    }
    expect(services.jwksFetches() - before).toBeLessThanOrEqual(1)
  })

  test('one keep-alive connection changing tokens is judged per request, never by the previous token', async () => {
    const { Client } = await import('undici')
    const client = new Client(gateway.url, { pipelining: 1 })
    try {
      const as = async (authorization: string) => {
        const res = await client.request({ path: '/tasks', method: 'GET', headers: { authorization } })
        await res.body.text()
        return res.statusCode
      }
      const alice = `Bearer ${await issuer.sign('1')}`
      const forged = `Bearer ${(await issuer.sign('1')).slice(0, -4)}AAAA`
      expect(await as(alice)).toBe(200)
      expect(await as(alice)).toBe(200)
      expect(await as(forged)).toBe(401)
      expect(await as('Bearer junk')).toBe(401)
      expect(await as(alice)).toBe(200)
    } finally {
      await client.close()
    }
  })

  test('registration, login and the public keys need no token', async () => {
    expect((await call(`${gateway.url}/users`, { method: 'POST', body: '{}' })).json.url).toBe('/users')
    expect((await call(`${gateway.url}/auth/token`, { method: 'POST', body: '{}' })).json.url).toBe(
      '/auth/token',
    )
    expect((await call(`${gateway.url}/.well-known/jwks.json`)).json).toEqual(issuer.jwks)
  })

  test('the gateway’s own routes need no token', async () => {
    for (const path of ['/', '/health', '/health/live', '/health/ready', '/metrics', '/openapi.json']) {
      expect((await call(`${gateway.url}${path}`)).status, path).toBe(200)
    }
  })
})

describe('AUTH_MODE=disabled', () => {
  test('nothing is verified: requests without or with junk tokens reach the services', async () => {
    const open = await startGateway({
      AUTH_MODE: 'disabled',
      RATE_LIMIT_ENABLED: 'false',
      ...services.env,
    })
    try {
      expect((await call(`${open.url}/tasks`)).status).toBe(200)
      const res = await call(`${open.url}/tasks`, { headers: { authorization: 'Bearer junk' } })
      expect(res.status).toBe(200)
      expect(res.json.headers.authorization).toBe('Bearer junk')
    } finally {
      await open.close()
    }
  })
})
