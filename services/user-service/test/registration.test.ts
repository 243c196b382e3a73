import type { App } from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { buildApp, PASSWORD, query, uniqueEmail } from './helpers.js'

const database = useTestDatabase('users')
let app: App

beforeAll(async () => {
  app = await buildApp(database.url)
})
afterAll(async () => {
  await app?.close()
})

const registerRaw = (payload: unknown) =>
  app.inject({ method: 'POST', url: '/users', payload: payload as object })

describe('POST /users', () => {
  test('creates a user with role user, answers 201 with Location and never the password or its hash', async () => {
    const email = uniqueEmail()
    const response = await registerRaw({ email, name: '  Ada Lovelace ', password: PASSWORD })
    expect(response.statusCode).toBe(201)
    const body = response.json()
    expect(body).toEqual({
      id: expect.any(Number),
      email,
      name: 'Ada Lovelace',
      role: 'user',
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      updated_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    })
    expect(response.headers.location).toBe(`/users/${body.id}`)
    expect(response.body).not.toContain(PASSWORD)
    expect(response.body).not.toContain('scrypt')
    expect(response.body).not.toContain('hash')
  })

  test('stores only an scrypt hash with its own salt', async () => {
    const first = (await registerRaw({ email: uniqueEmail(), name: 'A', password: PASSWORD })).json()
    const second = (await registerRaw({ email: uniqueEmail(), name: 'B', password: PASSWORD })).json()
    const rows = await query<{ id: number; password_hash: string }>(
      database.url,
      'select id, password_hash from users where id = any($1)',
      [[first.id, second.id]],
    )
    expect(rows).toHaveLength(2)
    for (const row of rows) {
      expect(row.password_hash).toMatch(/^scrypt\$10\$8\$1\$[\w-]{22}\$[\w-]{43}$/)
      expect(row.password_hash).not.toContain(PASSWORD)
    }
    expect(rows[0]?.password_hash).not.toBe(rows[1]?.password_hash)
  })

  test('mass assignment: role, id, created_at and password_hash in the body are ignored', async () => {
    const email = uniqueEmail()
    const response = await registerRaw({
      email,
      name: 'Mallory',
      password: PASSWORD,
      role: 'admin',
      id: 1,
      created_at: '2000-01-01T00:00:00Z',
      password_hash: 'scrypt$10$8$1$AAAA$BBBB',
    })
    expect(response.statusCode).toBe(201)
    const body = response.json()
    expect(body.role).toBe('user')
    expect(body.created_at).not.toMatch(/^2000/)
    const [row] = await query<{ role: string; password_hash: string }>(
      database.url,
      'select role, password_hash from users where id = $1',
      [body.id],
    )
    expect(row?.role).toBe('user')
    expect(row?.password_hash).not.toBe('scrypt$10$8$1$AAAA$BBBB')
  })

  test('emails are unique case-insensitively: 409', async () => {
    const email = uniqueEmail('Case')
    expect((await registerRaw({ email, name: 'A', password: PASSWORD })).statusCode).toBe(201)
    const again = await registerRaw({ email: email.toUpperCase(), name: 'B', password: PASSWORD })
    expect(again.statusCode).toBe(409)
    expect(again.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(again.json()).toMatchObject({ status: 409, detail: 'An account with this email already exists' })
  })

  test.each([
    ['a password under 12 characters', { password: 'short-pass1' }, 'password'],
    ['a password over 128 characters', { password: 'x'.repeat(129) }, 'password'],
    ['an invalid email', { email: 'not-an-email' }, 'email'],
    ['a missing name', { name: undefined }, 'name'],
    ['a blank name', { name: '   ' }, 'name'],
    ['a name over 100 characters', { name: 'n'.repeat(101) }, 'name'],
  ])('%s: 422 problem naming the field', async (_case, overrides, field) => {
    const response = await registerRaw({
      email: uniqueEmail(),
      name: 'Valid',
      password: PASSWORD,
      ...overrides,
    })
    expect(response.statusCode).toBe(422)
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(response.json().detail).toContain(field)
  })

  test('a body that is not JSON: 400 problem, nothing stored', async () => {
    const before = await query<{ count: number }>(database.url, 'select count(*)::int as count from users')
    const response = await app.inject({
      method: 'POST',
      url: '/users',
      headers: { 'content-type': 'application/json' },
      payload: '{"email": ',
    })
    expect(response.statusCode).toBe(400)
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
    const after = await query<{ count: number }>(database.url, 'select count(*)::int as count from users')
    expect(after[0]?.count).toBe(before[0]?.count)
  })
})

describe('registration rate limit (unrestricted resource consumption)', () => {
  test('one client gets 429 with Retry-After past REGISTRATION_RATE_LIMIT_PER_CLIENT; others do not', async () => {
    const limited = await buildApp(database.url, { REGISTRATION_RATE_LIMIT_PER_CLIENT: '3' })
    try {
      const from = (ip: string) =>
        limited.inject({
          method: 'POST',
          url: '/users',
          headers: { 'x-forwarded-for': ip },
          payload: { email: uniqueEmail(), name: 'R', password: PASSWORD },
        })
      for (let i = 0; i < 3; i += 1) expect((await from('203.0.113.5')).statusCode).toBe(201)
      const refused = await from('203.0.113.5')
      expect(refused.statusCode).toBe(429)
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0)
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect((await from('203.0.113.6')).statusCode).toBe(201)
    } finally {
      await limited.close()
    }
  })
})
