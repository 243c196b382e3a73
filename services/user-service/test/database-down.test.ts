import type { App } from '@task-manager/service-kit'
import { freePort } from '@task-manager/testing'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { buildApp, newKeyRing, PASSWORD } from './helpers.js'

// A database that does not answer: nothing the service acknowledges can be lost, so it must refuse
// with 503 + Retry-After (never 500, never a token it could not check).
let app: App

beforeAll(async () => {
  const port = await freePort()
  const { ring } = await newKeyRing()
  app = await buildApp(
    `postgres://nobody:nothing@127.0.0.1:${port}/users`,
    { MIGRATE_ON_START: 'false' },
    ring,
  )
})
afterAll(async () => {
  await app?.close()
})

test('login and registration answer 503 with Retry-After', async () => {
  for (const [url, payload] of [
    ['/auth/token', { email: 'a@example.test', password: PASSWORD }],
    ['/users', { email: 'a@example.test', name: 'A', password: PASSWORD }],
  ] as const) {
    const response = await app.inject({ method: 'POST', url, payload })
    expect(response.statusCode).toBe(503)
    expect(response.headers['retry-after']).toBeDefined()
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(response.body).not.toMatch(/ECONNREFUSED|nobody|nothing/)
  }
})

test('readiness reports the database down; liveness stays up; the JWKS is still served', async () => {
  expect((await app.inject({ url: '/health/ready' })).statusCode).toBe(503)
  expect((await app.inject({ url: '/health/live' })).statusCode).toBe(200)
  const jwks = await app.inject({ url: '/.well-known/jwks.json' })
  expect(jwks.statusCode, jwks.body).toBe(200)
})
