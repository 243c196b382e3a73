import { startTestIssuer } from '@task-manager/auth/testing'
import type { App } from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { buildApp, startUserServiceStub, type UserServiceStub } from './helpers.js'

// AUTH_MODE=disabled: the original open API. No token is needed or checked, there is no caller, so
// there are no membership checks: everyone may read and change everything.
const database = useTestDatabase()
let users: UserServiceStub
let app: App

beforeAll(async () => {
  users = await startUserServiceStub([1, 2, 3])
  app = await buildApp(database.url, { AUTH_MODE: 'disabled', USER_SERVICE_URL: users.url })
})
afterAll(async () => {
  await app?.close()
  await users?.close()
})

const create = (payload: Record<string, unknown>) => app.inject({ method: 'POST', url: '/projects', payload })

describe('AUTH_MODE=disabled', () => {
  test('creating a project needs owner_id (there is no caller to make owner)', async () => {
    const missing = await create({ name: 'Open' })
    expect(missing.statusCode).toBe(422)
    expect(missing.json().errors[0]).toMatchObject({ field: 'owner_id' })

    const created = await create({ name: 'Open', owner_id: 1 })
    expect(created.statusCode).toBe(201)
    expect(created.json().role).toBeNull()
    const lookup = await app.inject({ url: `/projects/${created.json().id}/members/1` })
    expect(lookup.statusCode).toBe(200)
    expect(lookup.json()).toEqual({ project_id: created.json().id, user_id: 1, role: 'owner' })
  })

  test('everything is open without a token: read, list, change, manage members, delete', async () => {
    const a = (await create({ name: 'A', owner_id: 1 })).json().id
    const b = (await create({ name: 'B', owner_id: 2 })).json().id

    const all = await app.inject({ url: '/projects?limit=200' })
    expect(all.statusCode).toBe(200)
    expect(all.json().map((p: { id: number }) => p.id)).toEqual(expect.arrayContaining([a, b]))
    const twos = await app.inject({ url: '/projects?user_id=2' })
    expect(twos.json().map((p: { id: number; role: string }) => [p.id, p.role])).toEqual([[b, 'owner']])

    expect(
      (await app.inject({ method: 'PATCH', url: `/projects/${a}`, payload: { name: 'A2' } })).json().name,
    ).toBe('A2')

    const added = await app.inject({
      method: 'POST',
      url: `/projects/${a}/members`,
      payload: { user_id: 3, role: 'editor' },
    })
    expect(added.statusCode).toBe(201)
    expect(users.requests.at(-1)?.authorization).toBeUndefined()
    expect(
      (
        await app.inject({
          method: 'POST',
          url: `/projects/${a}/members`,
          payload: { user_id: 99, role: 'editor' },
        })
      ).statusCode,
    ).toBe(422)

    // The last-owner rule still holds: it protects the data, not a caller.
    expect((await app.inject({ method: 'DELETE', url: `/projects/${a}/members/1` })).statusCode).toBe(409)
    expect((await app.inject({ method: 'DELETE', url: `/projects/${a}/members/3` })).statusCode).toBe(204)
    expect((await app.inject({ url: `/projects/${a}/members/3` })).statusCode).toBe(404)

    const memberships = await app.inject({ url: '/memberships?user_id=2' })
    expect(memberships.json()).toEqual([{ project_id: b, user_id: 2, role: 'owner' }])
    expect((await app.inject({ url: '/memberships' })).statusCode).toBe(422)

    expect((await app.inject({ method: 'DELETE', url: `/projects/${b}` })).statusCode).toBe(204)
    expect((await app.inject({ url: `/projects/${b}` })).statusCode).toBe(404)
  })

  test('a valid token, when sent, stands in for owner_id', async () => {
    const issuer = await startTestIssuer()
    const withKeys = await buildApp(database.url, { AUTH_MODE: 'disabled', JWKS_URL: issuer.jwksUrl })
    try {
      const token = await issuer.sign({ sub: 77 })
      const created = await withKeys.inject({
        method: 'POST',
        url: '/projects',
        headers: { authorization: `Bearer ${token}` },
        payload: { name: 'Mine' },
      })
      expect(created.statusCode).toBe(201)
      const owner = await withKeys.inject({ url: `/projects/${created.json().id}/members/77` })
      expect(owner.json().role).toBe('owner')
    } finally {
      await withKeys.close()
      await issuer.close()
    }
  })
})
