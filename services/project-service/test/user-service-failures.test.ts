import { startTestIssuer, type TestIssuer } from '@task-manager/auth/testing'
import type { App } from '@task-manager/service-kit'
import { freePort, useTestDatabase } from '@task-manager/testing'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { bearer, buildApp, startUserServiceStub, type UserServiceStub } from './helpers.js'

const OWNER = 1
const database = useTestDatabase()
let issuer: TestIssuer
let users: UserServiceStub
let owner: Record<string, string>
const apps: App[] = []

const TIMEOUT_MS = 300
const RESET_MS = 1000

async function appWith(userServiceUrl: string, env: Record<string, string> = {}): Promise<App> {
  const app = await buildApp(database.url, {
    JWKS_URL: issuer.jwksUrl,
    USER_SERVICE_URL: userServiceUrl,
    USER_SERVICE_TIMEOUT_MS: String(TIMEOUT_MS),
    USER_SERVICE_BREAKER_RESET_MS: String(RESET_MS),
    USER_SERVICE_BREAKER_MIN_CALLS: '3',
    ...env,
  })
  apps.push(app)
  return app
}

async function projectOn(app: App): Promise<number> {
  return (
    await app.inject({ method: 'POST', url: '/projects', headers: owner, payload: { name: 'P' } })
  ).json().id
}

async function add(app: App, project: number, userId: number) {
  const started = performance.now()
  const response = await app.inject({
    method: 'POST',
    url: `/projects/${project}/members`,
    headers: owner,
    payload: { user_id: userId, role: 'viewer' },
  })
  return { response, ms: performance.now() - started }
}

function expectUnavailable(response: Awaited<ReturnType<App['inject']>>) {
  expect(response.statusCode).toBe(503)
  expect(response.headers['content-type']).toContain('application/problem+json')
  expect(Number(response.headers['retry-after'])).toBeGreaterThanOrEqual(1)
  expect(response.json().type).toBe('urn:task-manager:problem:dependency-unavailable')
}

async function breakerState(app: App): Promise<number> {
  const metrics = (await app.inject({ url: '/metrics' })).body
  const line = metrics.split('\n').find((l) => l.startsWith('upstream_circuit_breaker_state{'))
  return Number(line?.split(' ').at(-1))
}

beforeAll(async () => {
  issuer = await startTestIssuer()
  users = await startUserServiceStub([2, 3, 4, 5, 6, 7, 8, 9])
  owner = bearer(await issuer.sign({ sub: OWNER }))
})
afterEach(async () => {
  users.mode = 'ok'
  while (apps.length > 0) await apps.pop()?.close()
})
afterAll(async () => {
  await users?.close()
  await issuer?.close()
})

describe('when the user-service fails, adding a member answers 503 with Retry-After, fast, never 500', () => {
  test('down (connection refused)', async () => {
    const app = await appWith(`http://127.0.0.1:${await freePort()}`)
    const project = await projectOn(app)
    const { response, ms } = await add(app, project, 2)
    expectUnavailable(response)
    expect(response.json().detail).toMatch(/unreachable/)
    expect(ms).toBeLessThan(1000)
  })

  test('slow: gives up after the timeout', async () => {
    const app = await appWith(users.url)
    const project = await projectOn(app)
    users.mode = 'slow'
    users.delayMs = 3000
    const { response, ms } = await add(app, project, 2)
    expectUnavailable(response)
    expect(response.json().detail).toBe(
      `The user-service did not answer within ${TIMEOUT_MS} ms; retry shortly`,
    )
    expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 20)
    expect(ms).toBeLessThan(TIMEOUT_MS + 700)
  })

  test('failing with 500', async () => {
    const app = await appWith(users.url)
    const project = await projectOn(app)
    users.mode = 'error'
    const { response } = await add(app, project, 2)
    expectUnavailable(response)
    expect(response.json().detail).toMatch(/answered 500/)
    // Nothing was added while the check could not be made.
    const members = await app.inject({ url: `/projects/${project}/members`, headers: owner })
    expect(members.json().map((m: { user_id: number }) => m.user_id)).toEqual([OWNER])
  })

  test('reads and membership lookups keep working while the user-service is down', async () => {
    const app = await appWith(`http://127.0.0.1:${await freePort()}`)
    const project = await projectOn(app)
    expect((await app.inject({ url: `/projects/${project}`, headers: owner })).statusCode).toBe(200)
    expect(
      (await app.inject({ url: `/projects/${project}/members/${OWNER}`, headers: owner })).statusCode,
    ).toBe(200)
    expect((await app.inject({ url: '/health/ready' })).statusCode).toBe(200)
  })
})

describe('circuit breaker', () => {
  test('opens after repeated failures: later calls fail fast without reaching the user-service, then it recovers', async () => {
    const app = await appWith(users.url)
    const project = await projectOn(app)
    users.mode = 'error'
    const before = users.requests.length
    for (let i = 0; i < 3; i += 1) expectUnavailable((await add(app, project, 2)).response)
    expect(users.requests.length - before).toBe(3)
    expect(await breakerState(app)).toBe(2)

    for (let i = 0; i < 5; i += 1) {
      const { response, ms } = await add(app, project, 2)
      expectUnavailable(response)
      expect(response.json().detail).toMatch(/circuit open/)
      expect(Number(response.headers['retry-after'])).toBeLessThanOrEqual(Math.ceil(RESET_MS / 1000))
      expect(ms).toBeLessThan(100)
    }
    expect(users.requests.length - before).toBe(3)

    // The user-service recovers; after the reset timeout one trial call goes through and closes the breaker.
    users.mode = 'ok'
    await new Promise((resolve) => setTimeout(resolve, RESET_MS + 100))
    expect((await add(app, project, 2)).response.statusCode).toBe(201)
    expect(await breakerState(app)).toBe(0)
    expect((await add(app, project, 3)).response.statusCode).toBe(201)
    expect(users.requests.length - before).toBe(5)
  })

  test('a slow user-service opens it too', async () => {
    const app = await appWith(users.url)
    const project = await projectOn(app)
    users.mode = 'slow'
    users.delayMs = 2000
    for (let i = 0; i < 3; i += 1) expectUnavailable((await add(app, project, 2)).response)
    const { response, ms } = await add(app, project, 2)
    expect(response.json().detail).toMatch(/circuit open/)
    expect(ms).toBeLessThan(100)
  })

  test('a user-service that refuses the call (401) → 503 too, but it is up: the breaker stays closed', async () => {
    const app = await appWith(users.url)
    const project = await projectOn(app)
    users.mode = 'refuse'
    for (let i = 0; i < 6; i += 1) {
      const { response } = await add(app, project, 2)
      expectUnavailable(response)
      expect(response.json().detail).toMatch(/answered 401/)
    }
    expect(await breakerState(app)).toBe(0)
    users.mode = 'ok'
    expect((await add(app, project, 2)).response.statusCode).toBe(201)
  })

  test('unknown users (404) are answers, not failures: the breaker stays closed', async () => {
    const app = await appWith(users.url)
    const project = await projectOn(app)
    for (let i = 0; i < 6; i += 1) {
      const { response } = await add(app, project, 1000 + i)
      expect(response.statusCode).toBe(422)
      expect(response.json().detail).toBe(`User ${1000 + i} does not exist`)
    }
    expect(await breakerState(app)).toBe(0)
    expect((await add(app, project, 4)).response.statusCode).toBe(201)
  })
})
