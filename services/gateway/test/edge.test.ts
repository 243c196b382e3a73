import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Agent, request } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { call, sleep, startGateway, testIssuer } from './helpers.js'
import { startServices, type TestServices } from './upstream-server.js'

let services: TestServices
let issuer: Awaited<ReturnType<typeof testIssuer>>

beforeAll(async () => {
  issuer = await testIssuer()
  services = await startServices()
})
afterAll(async () => {
  await services?.close()
})

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  services.tasks.behave(undefined)
  services.users.behave(undefined)
  while (cleanups.length > 0) await cleanups.pop()?.()
})

async function gatewayWith(env: Record<string, string>, extend?: (app: FastifyInstance) => Promise<void>) {
  const gateway = await startGateway(
    {
      AUTH_MODE: 'disabled',
      RATE_LIMIT_ENABLED: 'false',
      ...services.env,
      ...env,
    },
    { extend: extend as never },
  )
  cleanups.push(() => gateway.close())
  return gateway
}

/** A client connecting from another loopback address: another TCP peer, so another client to the gateway. */
function from(localAddress: string) {
  const agent = new Agent({ localAddress })
  cleanups.push(() => agent.close())
  return async (url: string) => {
    const res = await request(url, { dispatcher: agent })
    const text = await res.body.text()
    return { status: res.statusCode, text }
  }
}

describe('an exception in a request’s path', () => {
  test('thrown in a hook or rejected in a plugin: 500 problem+json without internals, and the gateway keeps serving', async () => {
    const gateway = await gatewayWith({}, async (app) => {
      app.addHook('onRequest', (request, _reply, done) => {
        if (request.headers['x-test-throw'] === 'hook') throw new Error('boom in a hook: internal detail')
        done()
      })
      await app.register(
        fp(async (instance: FastifyInstance) => {
          instance.addHook('preHandler', async (request) => {
            if (request.headers['x-test-throw'] === 'plugin') {
              await sleep(5)
              throw new Error('boom in a plugin: internal detail')
            }
          })
        }),
      )
    })
    for (const where of ['hook', 'plugin']) {
      const res = await call(`${gateway.url}/tasks/1`, { headers: { 'x-test-throw': where } })
      expect(res.status, where).toBe(500)
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/)
      expect(res.json).toMatchObject({ status: 500, instance: '/tasks/1' })
      expect(res.text).not.toContain('internal detail')
      expect((await call(`${gateway.url}/tasks/1`)).status).toBe(200)
    }
    expect(services.tasks.hits('/tasks/1')).toBeGreaterThanOrEqual(2)
  })
})

describe('requests in flight per client', () => {
  test('past MAX_IN_FLIGHT_PER_CLIENT one client gets 429 while another client is served', async () => {
    const held: Array<() => void> = []
    services.tasks.behave((req, res) => {
      if (!req.url?.startsWith('/tasks/hold')) return false
      held.push(() => res.end('{}'))
      return true
    })
    const gateway = await gatewayWith({ MAX_IN_FLIGHT_PER_CLIENT: '3' })
    const first = from('127.0.0.1')
    const second = from('127.0.0.2')
    const holding = [1, 2, 3].map((i) => first(`${gateway.url}/tasks/hold/${i}`))
    while (held.length < 3) await sleep(10)
    const refused = await first(`${gateway.url}/tasks/1`)
    expect(refused.status).toBe(429)
    expect(JSON.parse(refused.text)).toMatchObject({ type: 'urn:task-manager:problem:too-many-in-flight' })
    // Another client is not affected, nor are probes.
    expect((await second(`${gateway.url}/tasks/1`)).status).toBe(200)
    expect((await first(`${gateway.url}/health/live`)).status).toBe(200)
    for (const release of held) release()
    expect((await Promise.all(holding)).map((res) => res.status)).toEqual([200, 200, 200])
    expect((await first(`${gateway.url}/tasks/1`)).status).toBe(200)
    expect((await call(`${gateway.url}/metrics`)).text).toMatch(
      /gateway_concurrency_limited_total\{[^}]*\} 1\b/,
    )
  })
})

describe('route classes', () => {
  test('a burst of logins timing out opens the login circuit only: /users/me and registration-free routes keep answering', async () => {
    services.users.behave((req) => req.method === 'POST' && req.url === '/auth/token')
    const gateway = await gatewayWith({
      LOGIN_RESPONSE_TIMEOUT_MS: '1000',
      BREAKER_FAILURE_THRESHOLD: '3',
      BREAKER_RESET_MS: '60000',
      RETRY_ATTEMPTS: '0',
    })
    const login = () => call(`${gateway.url}/auth/token`, { method: 'POST', body: '{"email":"a@b.c"}' })
    const burst = await Promise.all(Array.from({ length: 6 }, login))
    expect(burst.map((res) => res.status)).toEqual(Array(6).fill(504))
    const open = await login()
    expect(open.status).toBe(503)
    expect(open.json).toMatchObject({
      type: 'urn:task-manager:problem:circuit-open',
      service: 'user-service',
    })
    for (let i = 0; i < 5; i++) expect((await call(`${gateway.url}/users/me`)).status).toBe(200)
    const metrics = (await call(`${gateway.url}/metrics`)).text
    expect(metrics).toMatch(
      /gateway_circuit_breaker_state\{[^}]*upstream="user-service",route_class="login"[^}]*\} 2/,
    )
    expect(metrics).toMatch(
      /gateway_circuit_breaker_state\{[^}]*upstream="user-service",route_class="default"[^}]*\} 0/,
    )
  })
})

describe('invalid tokens and the budget', () => {
  test('requests with bad tokens count against the client’s budget: 429 once it is spent, a verified caller unaffected', async () => {
    services.users.behave((req, res) => {
      if (req.url !== '/.well-known/jwks.json') return false
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(issuer.jwks))
      return true
    })
    const gateway = await gatewayWith({
      AUTH_MODE: 'required',
      RATE_LIMIT_ENABLED: 'true',
      RATE_LIMIT_READS_PER_MINUTE: '5',
    })
    const valid = `Bearer ${await issuer.sign('7')}`
    // Its first request is verified (and counted against the address); from then on it is the subject's.
    expect((await call(`${gateway.url}/tasks`, { headers: { authorization: valid } })).status).toBe(200)
    const statuses: number[] = []
    for (let i = 0; i < 8; i++) {
      const forged = `Bearer ${(await issuer.sign('7')).slice(0, -6)}AAAAAA`
      statuses.push((await call(`${gateway.url}/tasks`, { headers: { authorization: forged } })).status)
    }
    expect(statuses).toEqual([401, 401, 401, 401, 429, 429, 429, 429])
    expect((await call(`${gateway.url}/tasks`, { headers: { authorization: valid } })).status).toBe(200)
  })
})
