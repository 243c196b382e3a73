import { fileURLToPath } from 'node:url'
import { createVerifier } from '@task-manager/auth'
import { spawnEntry, useTestDatabase } from '@task-manager/testing'
import { describe, expect, test } from 'vitest'
import { newKeyRing, PASSWORD, startServiceProcess, uniqueEmail } from './helpers.js'

// The real service as an OS process over real HTTP: what other services see of it.
const database = useTestDatabase('users')
const serverEntry = fileURLToPath(new URL('../src/server.ts', import.meta.url))
const migrateEntry = fileURLToPath(new URL('../src/migrate.ts', import.meta.url))

async function registerAndLogin(url: string, email: string, password: string) {
  const created = await fetch(`${url}/users`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, name: 'Process', password }),
  })
  expect(created.status).toBe(201)
  const token = await fetch(`${url}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  })
  expect(token.status).toBe(200)
  return ((await token.json()) as { access_token: string }).access_token
}

describe('user-service process', () => {
  test('configured keys: another service verifies its tokens through the JWKS over HTTP', async () => {
    const { jwks } = await newKeyRing('prod-1', 'next-2')
    const service = await startServiceProcess({ DATABASE_URL: database.url, JWT_PRIVATE_KEYS: jwks })
    try {
      const token = await registerAndLogin(service.url, uniqueEmail(), PASSWORD)
      const verifier = createVerifier({ jwksUrl: `${service.url}/.well-known/jwks.json` })
      const principal = await verifier.verify(token)
      expect(principal.role).toBe('user')
      const published = (await (await fetch(`${service.url}/.well-known/jwks.json`)).json()) as {
        keys: { kid: string }[]
      }
      expect(published.keys.map((key: { kid: string }) => key.kid)).toEqual(['prod-1', 'next-2'])
      expect(JSON.stringify(published)).not.toContain('"d"')
      expect(service.output()).not.toContain('JWT_PRIVATE_KEYS is not set')
    } finally {
      await service.stop()
    }
  })

  test('no keys configured: one is generated with a warning; passwords never reach the logs', async () => {
    const secret = 'a very secret passphrase 42'
    const service = await startServiceProcess({ DATABASE_URL: database.url, LOG_LEVEL: 'trace' })
    try {
      const email = uniqueEmail()
      await registerAndLogin(service.url, email, secret)
      const wrong = await fetch(`${service.url}/auth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email, password: `${secret}-wrong` }),
      })
      expect(wrong.status).toBe(401)
      const warning = service
        .output()
        .split('\n')
        .find((line) => line.includes('JWT_PRIVATE_KEYS is not set'))
      expect(JSON.parse(warning as string).level).toBe('warn')
      expect(service.output()).not.toContain(secret)
      expect(service.output()).not.toContain('scrypt$')
    } finally {
      await service.stop()
    }
    expect(service.output()).not.toContain(secret)
  })

  test('SIGTERM drains and exits 0', async () => {
    const service = await startServiceProcess({ DATABASE_URL: database.url })
    expect(await service.stop()).toBe(0)
    expect(service.output()).toContain('shutdown complete')
  })

  test('AUTH_MODE=disabled logs a loud warning at start', async () => {
    const service = await startServiceProcess({ DATABASE_URL: database.url, AUTH_MODE: 'disabled' })
    try {
      expect(service.output()).toMatch(/AUTH_MODE=disabled/)
    } finally {
      await service.stop()
    }
  })

  test('a bad JWT_PRIVATE_KEYS exits with code 78 and a clear message', async () => {
    const run = spawnEntry(serverEntry, {
      DATABASE_URL: database.url,
      PORT: '65000',
      JWT_PRIVATE_KEYS: '[{"kid":"x"}]',
    })
    expect(await run.exited).toBe(78)
    expect(run.stderr()).toContain('JWT_PRIVATE_KEYS[0]')
  })

  test('migrate.ts applies the migrations and exits 0', async () => {
    const run = spawnEntry(migrateEntry, { DATABASE_URL: database.url })
    expect(await run.exited).toBe(0)
    expect(run.stdout()).toContain('user-service: migrations up to date')
  })

  test('migrate.ts with a database host that does not resolve: a line per attempt, then exit 69, no stack trace', async () => {
    const run = spawnEntry(migrateEntry, {
      DATABASE_URL: 'postgres://users:secret@users-db.nowhere.invalid:5432/users',
      DATABASE_WAIT_MS: '2000',
    })
    expect(await run.exited).toBe(69)
    expect(run.stdout()).toMatch(
      /^user-service: waiting for users-db\.nowhere\.invalid:5432\/users \(attempt 1: /,
    )
    expect(run.stderr().trim()).toMatch(
      /^user-service: users-db\.nowhere\.invalid:5432\/users did not answer within 2 s/,
    )
    expect(run.stderr().trim().split('\n')).toHaveLength(1)
    expect(run.output()).not.toContain('secret')
  })
})
