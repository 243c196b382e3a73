import { performance } from 'node:perf_hooks'
import { createVerifier } from '@task-manager/auth'
import type { App } from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import { decodeProtectedHeader } from 'jose'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { buildApp, newKeyRing, PASSWORD, query, register, uniqueEmail } from './helpers.js'

const database = useTestDatabase('users')
let app: App
let jwks: { keys: Array<Record<string, string>> }

beforeAll(async () => {
  app = await buildApp(database.url)
  jwks = (await app.inject({ url: '/.well-known/jwks.json' })).json()
})
afterAll(async () => {
  await app?.close()
})

const tokenRequest = (payload: Record<string, unknown>, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url: '/auth/token', payload, headers })

describe('POST /auth/token', () => {
  test('JSON email + password: a Bearer token for 15 minutes, not cacheable', async () => {
    const user = await register(app)
    const response = await tokenRequest({ email: user.email, password: PASSWORD })
    expect(response.statusCode).toBe(200)
    expect(response.headers['cache-control']).toBe('no-store')
    const body = response.json()
    expect(body).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: 900 })
  })

  test('the token is EdDSA with a published kid and carries iss, aud, sub, role, exp', async () => {
    const user = await register(app)
    const header = decodeProtectedHeader(user.token)
    expect(header.alg).toBe('EdDSA')
    expect(jwks.keys.map((key) => key.kid)).toContain(header.kid)
    const [, payload] = user.token.split('.')
    const claims = JSON.parse(Buffer.from(payload as string, 'base64url').toString())
    expect(claims).toMatchObject({
      iss: 'task-manager',
      aud: 'task-manager-api',
      sub: String(user.id),
      role: 'user',
    })
    expect(claims.exp - Math.floor(claims.iat)).toBe(900)
    // Exactly what every other service does with it:
    const verifier = createVerifier({ jwks: jwks as never })
    expect(await verifier.verify(user.token)).toEqual({ id: user.id, role: 'user' })
  })

  test('the JWKS publishes public keys only', async () => {
    expect(jwks.keys.length).toBeGreaterThan(0)
    for (const key of jwks.keys) {
      expect(key).toEqual({
        kty: 'OKP',
        crv: 'Ed25519',
        x: expect.any(String),
        kid: expect.any(String),
        alg: 'EdDSA',
        use: 'sig',
      })
      expect(key).not.toHaveProperty('d')
    }
  })

  test('the email matches whatever its case', async () => {
    const user = await register(app)
    expect((await tokenRequest({ email: user.email.toUpperCase(), password: PASSWORD })).statusCode).toBe(200)
  })

  test('OAuth 2.0 password grant, form-encoded (username = email)', async () => {
    const user = await register(app)
    const form = new URLSearchParams({ grant_type: 'password', username: user.email, password: PASSWORD })
    const response = await app.inject({
      method: 'POST',
      url: '/auth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: form.toString(),
    })
    expect(response.statusCode).toBe(200)
    expect(response.json().token_type).toBe('Bearer')
  })

  test('an unknown email and a wrong password get the very same answer', async () => {
    const user = await register(app)
    const wrongPassword = await tokenRequest({ email: user.email, password: 'not the password at all' })
    const unknownEmail = await tokenRequest({
      email: uniqueEmail('nobody'),
      password: 'not the password at all',
    })
    for (const response of [wrongPassword, unknownEmail]) {
      expect(response.statusCode).toBe(401)
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(response.headers['www-authenticate']).toBe('Bearer realm="task-manager"')
    }
    expect(wrongPassword.json()).toEqual(unknownEmail.json())
    expect(wrongPassword.json().detail).toBe('Invalid email or password')
  })

  test('an unknown email costs as much time as a wrong password (a decoy hash is checked)', async () => {
    // A realistic cost (N = 2^14) so the hash dominates and a skipped hash would show plainly.
    const costly = await buildApp(database.url, { PASSWORD_SCRYPT_LOG_N: '14' })
    try {
      const email = uniqueEmail()
      await costly.inject({
        method: 'POST',
        url: '/users',
        payload: { email, name: 'T', password: PASSWORD },
      })
      const time = async (payload: object) => {
        const started = performance.now()
        const response = await costly.inject({ method: 'POST', url: '/auth/token', payload })
        expect(response.statusCode).toBe(401)
        return performance.now() - started
      }
      const median = (values: number[]) =>
        values.sort((a, b) => a - b)[Math.floor(values.length / 2)] as number
      const known: number[] = []
      const unknown: number[] = []
      for (let i = 0; i < 5; i += 1) {
        known.push(await time({ email, password: 'wrong password here' }))
        unknown.push(await time({ email: uniqueEmail('ghost'), password: 'wrong password here' }))
      }
      const ratio = median(unknown) / median(known)
      console.log(
        `login timing: wrong password ${median(known).toFixed(1)} ms, unknown email ${median(unknown).toFixed(1)} ms`,
      )
      expect(ratio).toBeGreaterThan(0.5)
      expect(ratio).toBeLessThan(2)
    } finally {
      await costly.close()
    }
  })

  test.each([
    ['no password', { email: 'a@example.test' }],
    ['neither email nor username', { password: PASSWORD }],
    ['a password over 128 characters', { email: 'a@example.test', password: 'p'.repeat(129) }],
    [
      'another grant type',
      { grant_type: 'client_credentials', username: 'a@example.test', password: PASSWORD },
    ],
  ])('%s: 422 problem', async (_case, payload) => {
    const response = await tokenRequest(payload)
    expect(response.statusCode).toBe(422)
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
  })

  test('a hash made with weaker parameters is upgraded at the next successful login', async () => {
    const user = await register(app)
    const stronger = await buildApp(database.url, { PASSWORD_SCRYPT_LOG_N: '11' })
    try {
      expect(
        (
          await stronger.inject({
            method: 'POST',
            url: '/auth/token',
            payload: { email: user.email, password: PASSWORD },
          })
        ).statusCode,
      ).toBe(200)
      const [row] = await query<{ password_hash: string }>(
        database.url,
        'select password_hash from users where id = $1',
        [user.id],
      )
      expect(row?.password_hash).toMatch(/^scrypt\$11\$8\$1\$/)
      // Still the same password.
      expect((await tokenRequest({ email: user.email, password: PASSWORD })).statusCode).toBe(200)
    } finally {
      await stronger.close()
    }
  })

  test('tokens carry the role from the database', async () => {
    const { ring } = await newKeyRing()
    const adminEmail = uniqueEmail('admin')
    const withAdmin = await buildApp(
      database.url,
      { ADMIN_EMAIL: adminEmail, ADMIN_PASSWORD: PASSWORD },
      ring,
    )
    try {
      const response = await withAdmin.inject({
        method: 'POST',
        url: '/auth/token',
        payload: { email: adminEmail, password: PASSWORD },
      })
      const verifier = createVerifier({ jwks: ring.jwks })
      expect((await verifier.verify(response.json().access_token)).role).toBe('admin')
    } finally {
      await withAdmin.close()
    }
  })
})

describe('login rate limits (broken authentication, unrestricted resource consumption)', () => {
  test('per email: after LOGIN_FAILURES_PER_EMAIL failures even the right password gets 429 with Retry-After', async () => {
    const limited = await buildApp(database.url, { LOGIN_FAILURES_PER_EMAIL: '3' })
    try {
      const email = uniqueEmail()
      await limited.inject({
        method: 'POST',
        url: '/users',
        payload: { email, name: 'V', password: PASSWORD },
      })
      const attempt = (password: string, ip: string) =>
        limited.inject({
          method: 'POST',
          url: '/auth/token',
          headers: { 'x-forwarded-for': ip },
          payload: { email, password },
        })
      // Failures from several clients add up: the lock is about the account, not the address.
      for (const ip of ['198.51.100.1', '198.51.100.2', '198.51.100.3']) {
        expect((await attempt('wrong password!!', ip)).statusCode).toBe(401)
      }
      const locked = await attempt(PASSWORD, '198.51.100.4')
      expect(locked.statusCode).toBe(429)
      expect(Number(locked.headers['retry-after'])).toBeGreaterThan(800)
      expect(locked.headers['content-type']).toMatch(/^application\/problem\+json/)
      // Another account is unaffected.
      const other = uniqueEmail()
      await limited.inject({
        method: 'POST',
        url: '/users',
        payload: { email: other, name: 'W', password: PASSWORD },
      })
      const fine = await limited.inject({
        method: 'POST',
        url: '/auth/token',
        payload: { email: other, password: PASSWORD },
      })
      expect(fine.statusCode).toBe(200)
    } finally {
      await limited.close()
    }
  })

  test('per email: unknown emails lock the same way, so a lock reveals nothing', async () => {
    const limited = await buildApp(database.url, { LOGIN_FAILURES_PER_EMAIL: '2' })
    try {
      const ghost = uniqueEmail('ghost')
      const statuses: number[] = []
      for (let i = 0; i < 3; i += 1) {
        statuses.push(
          (
            await limited.inject({
              method: 'POST',
              url: '/auth/token',
              payload: { email: ghost, password: 'whatever123456' },
            })
          ).statusCode,
        )
      }
      expect(statuses).toEqual([401, 401, 429])
    } finally {
      await limited.close()
    }
  })

  test('successful logins do not count towards the email lock', async () => {
    const limited = await buildApp(database.url, { LOGIN_FAILURES_PER_EMAIL: '2' })
    try {
      const email = uniqueEmail()
      await limited.inject({
        method: 'POST',
        url: '/users',
        payload: { email, name: 'S', password: PASSWORD },
      })
      for (let i = 0; i < 5; i += 1) {
        const response = await limited.inject({
          method: 'POST',
          url: '/auth/token',
          payload: { email, password: PASSWORD },
        })
        expect(response.statusCode).toBe(200)
      }
    } finally {
      await limited.close()
    }
  })

  test('per client: past LOGIN_RATE_LIMIT_PER_CLIENT attempts one address gets 429, before any hashing', async () => {
    const limited = await buildApp(database.url, { LOGIN_RATE_LIMIT_PER_CLIENT: '4' })
    try {
      const attempt = (ip: string) =>
        limited.inject({
          method: 'POST',
          url: '/auth/token',
          headers: { 'x-forwarded-for': ip },
          payload: { email: uniqueEmail('spray'), password: 'password-spray-1' },
        })
      for (let i = 0; i < 4; i += 1) expect((await attempt('192.0.2.10')).statusCode).toBe(401)
      const refused = await attempt('192.0.2.10')
      expect(refused.statusCode).toBe(429)
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0)
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect((await attempt('192.0.2.11')).statusCode).toBe(401)
    } finally {
      await limited.close()
    }
  })

  test('login outcomes are counted in /metrics', async () => {
    const metrics = (await app.inject({ url: '/metrics' })).body
    expect(metrics).toMatch(
      /user_service_login_attempts_total\{outcome="success",service="user-service"\} [1-9]/,
    )
    expect(metrics).toMatch(
      /user_service_login_attempts_total\{outcome="invalid_credentials",service="user-service"\} [1-9]/,
    )
  })
})
