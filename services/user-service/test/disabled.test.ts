import type { App } from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { buildApp, PASSWORD, putRole, register, uniqueEmail } from './helpers.js'

// AUTH_MODE=disabled: the original open API for demos and compatibility tests.
const database = useTestDatabase('users')
let app: App

beforeAll(async () => {
  app = await buildApp(database.url, { AUTH_MODE: 'disabled' })
})
afterAll(async () => {
  await app?.close()
})

describe('AUTH_MODE=disabled', () => {
  test('registration and login still work and still issue verifiable tokens', async () => {
    const user = await register(app)
    expect(user.token.split('.')).toHaveLength(3)
    const me = await app.inject({ url: '/users/me', headers: user.auth })
    expect(me.json()).toMatchObject({ id: user.id, email: user.email })
  })

  test('"me" endpoints still need to know who is asking: 401 without a token', async () => {
    const response = await app.inject({ url: '/users/me' })
    expect(response.statusCode).toBe(401)
    expect(response.headers['www-authenticate']).toBe('Bearer realm="task-manager"')
  })

  test('a bad token is ignored rather than refused (no caller)', async () => {
    const response = await app.inject({ url: '/users/me', headers: { authorization: 'Bearer x.y.z' } })
    expect(response.statusCode).toBe(401)
    expect(response.headers['www-authenticate']).toBe('Bearer realm="task-manager"')
  })

  test('public profiles are open', async () => {
    const user = await register(app, { name: 'Open' })
    const response = await app.inject({ url: `/users/${user.id}` })
    expect(response.json()).toEqual({ id: user.id, name: 'Open' })
  })

  test('deleting by id is open, as in the original API', async () => {
    const user = await register(app)
    expect((await app.inject({ method: 'DELETE', url: `/users/${user.id}` })).statusCode).toBe(204)
    expect((await app.inject({ url: `/users/${user.id}` })).statusCode).toBe(404)
  })

  test('a caller who does identify still cannot delete someone else', async () => {
    const alice = await register(app)
    const bob = await register(app)
    expect(
      (await app.inject({ method: 'DELETE', url: `/users/${alice.id}`, headers: bob.auth })).statusCode,
    ).toBe(403)
  })

  test('roles still need an admin: 401 without a token', async () => {
    const user = await register(app)
    const response = await putRole(app, user.id, 'admin')
    expect(response.statusCode).toBe(401)
  })

  test('mass assignment protection does not depend on the mode', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/users',
      payload: { email: uniqueEmail(), name: 'Eve', password: PASSWORD, role: 'admin' },
    })
    expect(response.json().role).toBe('user')
  })
})

describe('OpenAPI', () => {
  test('the document lists every user-service route', async () => {
    const response = await app.inject({ url: '/openapi.json' })
    expect(response.statusCode).toBe(200)
    const paths = Object.keys(response.json().paths)
    for (const path of [
      '/users',
      '/users/me',
      '/users/{id}',
      '/users/{id}/role',
      '/auth/token',
      '/.well-known/jwks.json',
    ]) {
      expect(paths).toContain(path)
    }
  })
})
