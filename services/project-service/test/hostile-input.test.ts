import type { App } from '@task-manager/service-kit'
import {
  type Call,
  expectFieldRefused,
  jsonCaller,
  listenOnLoopback,
  useTestDatabase,
} from '@task-manager/testing'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { buildApp, startUserServiceStub, type UserServiceStub } from './helpers.js'

// Input a hostile client sends, through real HTTP against real PostgreSQL: 4xx problem+json naming the
// field, nothing written.

const database = useTestDatabase('hostile_projects')
let users: UserServiceStub
let app: App
let call: Call
let projectId: number

async function rows(): Promise<{ projects: unknown[]; members: unknown[] }> {
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  try {
    const projects = (await client.query('select * from projects order by id')).rows
    const members = (await client.query('select * from project_members order by project_id, user_id')).rows
    return { projects, members }
  } finally {
    await client.end()
  }
}

beforeAll(async () => {
  users = await startUserServiceStub([1, 2])
  app = await buildApp(database.url, { AUTH_MODE: 'disabled', USER_SERVICE_URL: users.url })
  call = jsonCaller(await listenOnLoopback(app))
  projectId = (await call('POST', '/projects', { name: 'Launch', owner_id: 1 })).body.id
})
afterAll(async () => {
  await app?.close()
  await users?.close()
})

describe('text the database cannot store', () => {
  for (const [change, field] of [
    [{ name: 'a\u0000b' }, 'name'],
    [{ description: '\u0000' }, 'description'],
    [{ name: 'lone \udc00 surrogate' }, 'name'],
    [{ name: '   ' }, 'name'],
  ] as const) {
    test(`${JSON.stringify(change)}: 422 naming '${field}' on create and patch; nothing written`, async () => {
      const before = await rows()
      expectFieldRefused(
        await call('POST', '/projects', { name: 'ok', owner_id: 1, ...change }),
        'body',
        field,
      )
      expectFieldRefused(await call('PATCH', `/projects/${projectId}`, change), 'body', field)
      expect(await rows()).toEqual(before)
    })
  }
})

test('a PATCH of ignored fields only, or of the stored values, writes nothing (updated_at stays)', async () => {
  const before = await rows()
  const current = (await call('GET', `/projects/${projectId}`)).body
  for (const patch of [
    { id: 5, role: 'owner', created_at: '2020-01-01T00:00:00Z' },
    { name: current.name, status: current.status },
  ]) {
    const answer = await call('PATCH', `/projects/${projectId}`, patch)
    expect(answer.status).toBe(200)
    expect(answer.body).toEqual(current)
  }
  expect(await rows()).toEqual(before)
})

describe('ids in the path and the query string', () => {
  for (const id of ['Infinity', '1e3', '1.0', '0x10', '99999999999999999999', '0']) {
    test(`${id}: 422 naming the parameter; nothing written`, async () => {
      const before = await rows()
      expectFieldRefused(await call('GET', `/projects/${id}`), 'params', 'id')
      expectFieldRefused(await call('PATCH', `/projects/${id}`, { name: 'x' }), 'params', 'id')
      expectFieldRefused(await call('DELETE', `/projects/${id}`), 'params', 'id')
      expectFieldRefused(
        await call('POST', `/projects/${id}/members`, { user_id: 2, role: 'viewer' }),
        'params',
        'id',
      )
      expectFieldRefused(await call('GET', `/projects/${projectId}/members/${id}`), 'params', 'userId')
      expectFieldRefused(await call('DELETE', `/projects/${projectId}/members/${id}`), 'params', 'userId')
      expectFieldRefused(await call('GET', `/projects?user_id=${id}`), 'querystring', 'user_id')
      expectFieldRefused(await call('GET', `/memberships?user_id=${id}`), 'querystring', 'user_id')
      expect(await rows()).toEqual(before)
    })
  }

  test('a member id past the integer column in the body: 422, nothing written', async () => {
    const before = await rows()
    expectFieldRefused(
      await call('POST', `/projects/${projectId}/members`, { user_id: 2 ** 31, role: 'viewer' }),
      'body',
      'user_id',
    )
    expect(await rows()).toEqual(before)
  })
})

describe('list cursors', () => {
  const forge = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
  for (const [what, cursor] of [
    ['an id past the integer column', forge({ after: 1e20 })],
    ['a negative id', forge({ after: -1 })],
    ['a string id', forge({ after: '1' })],
    ['a fractional id', forge({ after: 1.5 })],
    ['another shape', forge(['created_at', '2026-01-01T00:00:00Z', 1])],
    ['not JSON', Buffer.from('{').toString('base64url')],
    ['not base64url', '%2B%2F%3D'],
  ] as const) {
    test(`a cursor with ${what}: 422 naming 'cursor' on both lists`, async () => {
      expectFieldRefused(await call('GET', `/projects?user_id=1&cursor=${cursor}`), 'querystring', 'cursor')
      expectFieldRefused(
        await call('GET', `/memberships?user_id=1&cursor=${cursor}`),
        'querystring',
        'cursor',
      )
    })
  }

  test('issued cursors page through', async () => {
    for (let i = 0; i < 3; i++) await call('POST', '/projects', { name: `P${i}`, owner_id: 1 })
    let url: string | null = '/projects?user_id=1&limit=1'
    const seen: number[] = []
    while (url) {
      const answer = await call('GET', url)
      expect(answer.status).toBe(200)
      seen.push(...answer.body.map((p: { id: number }) => p.id))
      url = /<([^>]+)>; rel="next"/.exec(answer.headers.get('link') ?? '')?.[1] ?? null
    }
    expect(seen).toHaveLength(4)
  })
})
