import { startTestIssuer, type TestIssuer } from '@task-manager/auth/testing'
import type { App } from '@task-manager/service-kit'
import { freePort } from '@task-manager/testing'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { bearer, buildApp } from './helpers.js'

// The service's database is unreachable: every data route answers 503 + Retry-After (never 500) and
// readiness reports it, so Kubernetes stops routing here until it is back.
let issuer: TestIssuer
let app: App
let headers: Record<string, string>

beforeAll(async () => {
  issuer = await startTestIssuer()
  app = await buildApp(`postgres://postgres:postgres@127.0.0.1:${await freePort()}/projects`, {
    JWKS_URL: issuer.jwksUrl,
    MIGRATE_ON_START: 'false',
  })
  headers = bearer(await issuer.sign({ sub: 1 }))
})
afterAll(async () => {
  await app?.close()
  await issuer?.close()
})

test.each([
  ['GET', '/projects', undefined],
  ['POST', '/projects', { name: 'Lost?' }],
  ['GET', '/projects/1', undefined],
  ['PATCH', '/projects/1', { name: 'x' }],
  ['GET', '/projects/1/members/1', undefined],
  ['DELETE', '/projects/1/members/2', undefined],
] as const)('%s %s → 503 problem with Retry-After', async (method, url, payload) => {
  const response = await app.inject({ method, url, headers, ...(payload && { payload }) })
  expect(response.statusCode).toBe(503)
  expect(response.headers['content-type']).toContain('application/problem+json')
  expect(response.headers['retry-after']).toBeDefined()
  expect(response.body).not.toMatch(/ECONNREFUSED|stack/)
})

test('readiness is 503 and names the database; liveness stays 200', async () => {
  const ready = await app.inject({ url: '/health/ready' })
  expect(ready.statusCode).toBe(503)
  expect(ready.json().checks.database).toBe('down')
  expect((await app.inject({ url: '/health/live' })).statusCode).toBe(200)
})
