import type { App } from '@task-manager/service-kit'
import {
  type Call,
  expectFieldRefused,
  jsonCaller,
  listenOnLoopback,
  useTestDatabase,
} from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { buildApp, PASSWORD, query, register, type TestUser, uniqueEmail } from './helpers.js'

const countUsers = async (url: string) =>
  (await query<{ count: number }>(url, 'select count(*)::int as count from users'))[0]?.count

// Input a hostile client sends, through real HTTP against real PostgreSQL: registration and login are
// unauthenticated, so they are the first thing a hostile client tries.

const database = useTestDatabase('hostile_users')
let app: App
let call: Call
let base: string
let user: TestUser

beforeAll(async () => {
  app = await buildApp(database.url)
  base = await listenOnLoopback(app)
  call = jsonCaller(base)
  user = await register(app)
})
afterAll(async () => app?.close())

describe('registration', () => {
  for (const [change, field] of [
    [{ name: 'Ada\u0000' }, 'name'],
    [{ name: '\ud800' }, 'name'],
    [{ name: ' \t ' }, 'name'],
    [{ email: 'ada\u0000@example.com' }, 'email'],
    [{ password: 'correct horse\u0000battery' }, 'password'],
  ] as const) {
    test(`${JSON.stringify(change)}: 422 naming '${field}'; no account created`, async () => {
      const before = await countUsers(database.url)
      const answer = await call('POST', '/users', {
        email: uniqueEmail(),
        name: 'Ada',
        password: PASSWORD,
        ...change,
      })
      expectFieldRefused(answer, 'body', field)
      expect(await countUsers(database.url)).toBe(before)
    })
  }
})

describe('login and profile', () => {
  test('NUL in the login email or username: 422, not a database error', async () => {
    expectFieldRefused(
      await call('POST', '/auth/token', { email: 'a\u0000b', password: 'x' }),
      'body',
      'email',
    )
    const form = await fetch(`${base}/auth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=password&username=a%00b&password=x',
    })
    expect(form.status).toBe(422)
    expect(((await form.json()) as { errors: unknown[] }).errors).toContainEqual(
      expect.objectContaining({ field: 'username' }),
    )
  })

  test('NUL in a profile change: 422 naming the field, profile unchanged', async () => {
    const auth = { authorization: `Bearer ${user.token}` }
    expectFieldRefused(await call('PATCH', '/users/me', { name: 'x\u0000' }, auth), 'body', 'name')
    expect((await call('GET', '/users/me', undefined, auth)).body.name).toBe('Test User')
  })

  for (const id of ['Infinity', '1e3', '1.0', '99999999999999999999']) {
    test(`/users/${id}: 422 naming 'id'`, async () => {
      const auth = { authorization: `Bearer ${user.token}` }
      expectFieldRefused(await call('GET', `/users/${id}`, undefined, auth), 'params', 'id')
    })
  }
})
