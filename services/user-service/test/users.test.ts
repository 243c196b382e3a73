import type { App } from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { KeyRing } from '../src/keys.js'
import {
  buildApp,
  forgeHmac,
  forgeUnsigned,
  login,
  newKeyRing,
  PASSWORD,
  patchMe,
  putRole,
  query,
  register,
  signWith,
  type TestUser,
  uniqueEmail,
} from './helpers.js'

const database = useTestDatabase('users')
let app: App
let ring: KeyRing
let adminEmail: string
let admin: TestUser

beforeAll(async () => {
  ring = (await newKeyRing('k1')).ring
  adminEmail = uniqueEmail('admin')
  app = await buildApp(database.url, { ADMIN_EMAIL: adminEmail, ADMIN_PASSWORD: PASSWORD }, ring)
  const token = await login(app, adminEmail, PASSWORD)
  const me = (await app.inject({ url: '/users/me', headers: { authorization: `Bearer ${token}` } })).json()
  admin = { id: me.id, email: adminEmail, token, auth: { authorization: `Bearer ${token}` } }
})
afterAll(async () => {
  await app?.close()
})

function expectProblem(response: { statusCode: number; headers: Record<string, unknown> }, status: number) {
  expect(response.statusCode).toBe(status)
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
}

describe('GET /users/me', () => {
  test('the caller’s own account, without the password hash', async () => {
    const user = await register(app, { name: 'Grace Hopper' })
    const response = await app.inject({ url: '/users/me', headers: user.auth })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({
      id: user.id,
      email: user.email,
      name: 'Grace Hopper',
      role: 'user',
      created_at: expect.any(String),
      updated_at: expect.any(String),
    })
    expect(response.body).not.toMatch(/password|scrypt/)
  })

  test('no token: 401 with a Bearer challenge', async () => {
    const response = await app.inject({ url: '/users/me' })
    expectProblem(response, 401)
    expect(response.headers['www-authenticate']).toBe('Bearer realm="task-manager"')
  })
})

describe('broken authentication: tokens the service must refuse', () => {
  const now = () => Math.floor(Date.now() / 1000)
  let user: TestUser
  beforeAll(async () => {
    user = await register(app)
  })

  test.each<[string, () => Promise<string> | string]>([
    ['expired', () => signWith(ring, { sub: String(user.id), exp: now() - 60, iat: now() - 960 })],
    ['wrong issuer', () => signWith(ring, { sub: String(user.id), iss: 'https://evil.example' })],
    ['wrong audience', () => signWith(ring, { sub: String(user.id), aud: 'some-other-api' })],
    ['alg none', () => forgeUnsigned({ sub: String(user.id), role: 'admin' }, ring.signing.kid)],
    ['HS256 signed with the public key', () => forgeHmac(ring, { sub: String(user.id), role: 'admin' })],
    [
      'a key the service never had',
      async () => signWith((await newKeyRing('k1')).ring, { sub: String(user.id) }),
    ],
    ['garbage', () => 'definitely.not.ajwt'],
  ])('%s: 401 invalid_token', async (_case, makeToken) => {
    const response = await app.inject({
      url: '/users/me',
      headers: { authorization: `Bearer ${await makeToken()}` },
    })
    expectProblem(response, 401)
    expect(response.headers['www-authenticate']).toContain('error="invalid_token"')
  })

  test('a token in the URL is never accepted', async () => {
    expectProblem(await app.inject({ url: `/users/me?access_token=${user.token}` }), 401)
  })

  test('a token for a deleted account no longer authenticates', async () => {
    const doomed = await register(app)
    expect((await app.inject({ method: 'DELETE', url: '/users/me', headers: doomed.auth })).statusCode).toBe(
      204,
    )
    const response = await app.inject({ url: '/users/me', headers: doomed.auth })
    expectProblem(response, 401)
    expect(response.json().detail).toContain('no longer exists')
  })
})

describe('key rotation', () => {
  test('several configured keys are all published; the first signs; a removed key’s tokens are refused', async () => {
    const user = await register(app)
    const oldToken = user.token // signed by k1
    const rotated = await newKeyRing('k2')
    const both = {
      ...rotated.ring,
      all: [...rotated.ring.all, ...ring.all],
      jwks: { keys: [...rotated.ring.jwks.keys, ...ring.jwks.keys] },
    }
    const during = await buildApp(database.url, {}, both)
    try {
      const kids = (await during.inject({ url: '/.well-known/jwks.json' }))
        .json()
        .keys.map((key: { kid: string }) => key.kid)
      expect(kids).toEqual(['k2', 'k1'])
      // Old tokens keep working while both keys are published…
      expect((await during.inject({ url: '/users/me', headers: user.auth })).statusCode).toBe(200)
      // …and new ones are signed by the first key.
      const fresh = await login(during, user.email, PASSWORD)
      expect(JSON.parse(Buffer.from(fresh.split('.')[0] as string, 'base64url').toString()).kid).toBe('k2')
    } finally {
      await during.close()
    }
    const after = await buildApp(database.url, {}, rotated.ring)
    try {
      expectProblem(
        await after.inject({ url: '/users/me', headers: { authorization: `Bearer ${oldToken}` } }),
        401,
      )
    } finally {
      await after.close()
    }
  })
})

describe('PATCH /users/me', () => {
  test('changes the name', async () => {
    const user = await register(app)
    const response = await patchMe(app, user, { name: 'New Name' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({ id: user.id, name: 'New Name', role: 'user' })
  })

  test('mass assignment: role, id and created_at are ignored; alone they change nothing (200, as it is)', async () => {
    const user = await register(app)
    const before = (await app.inject({ url: '/users/me', headers: user.auth })).json()
    const alone = await patchMe(app, user, { role: 'admin', id: 1, created_at: '2000-01-01T00:00:00Z' })
    expect(alone.statusCode).toBe(200)
    expect(alone.json()).toEqual(before)
    const mixed = await patchMe(app, user, { name: 'X', role: 'admin' })
    expect(mixed.statusCode).toBe(200)
    expect(mixed.json()).toMatchObject({ id: user.id, role: 'user' })
    const fresh = await login(app, user.email, PASSWORD)
    const payload = JSON.parse(Buffer.from(fresh.split('.')[1] as string, 'base64url').toString())
    expect(payload.role).toBe('user')
  })

  test('changing the password needs the current one; afterwards only the new one logs in', async () => {
    const user = await register(app)
    const next = 'an entirely new passphrase'
    expectProblem(await patchMe(app, user, { password: next }), 422)
    expectProblem(await patchMe(app, user, { password: next, current_password: 'wrong password!' }), 403)
    const changed = await patchMe(app, user, { password: next, current_password: PASSWORD })
    expect(changed.statusCode).toBe(200)
    expect(changed.body).not.toContain(next)
    await expect(login(app, user.email, PASSWORD)).rejects.toThrow(/401/)
    expect(await login(app, user.email, next)).toEqual(expect.any(String))
  })

  test('changing the email needs the current password and stays unique', async () => {
    const user = await register(app)
    const other = await register(app)
    expectProblem(await patchMe(app, user, { email: uniqueEmail() }), 422)
    expectProblem(
      await patchMe(app, user, { email: other.email.toUpperCase(), current_password: PASSWORD }),
      409,
    )
    const email = uniqueEmail('moved')
    const moved = await patchMe(app, user, { email, current_password: PASSWORD })
    expect(moved.json().email).toBe(email)
    expect(await login(app, email, PASSWORD)).toEqual(expect.any(String))
  })

  test('invalid values: 422', async () => {
    const user = await register(app)
    for (const payload of [
      { name: '' },
      { name: '   ' },
      { email: 'nope' },
      { password: 'short', current_password: PASSWORD },
    ]) {
      expectProblem(await patchMe(app, user, payload), 422)
    }
  })
})

describe('GET /users/:id', () => {
  test('another user sees only the public profile (id, name)', async () => {
    const alice = await register(app, { name: 'Alice' })
    const bob = await register(app)
    const response = await app.inject({ url: `/users/${alice.id}`, headers: bob.auth })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ id: alice.id, name: 'Alice' })
  })

  test('unknown user: 404; bad id: 422; no token: 401', async () => {
    const user = await register(app)
    const missing = await app.inject({ url: '/users/2000000000', headers: user.auth })
    expectProblem(missing, 404)
    expect(missing.json().detail).toBe('User 2000000000 not found')
    expectProblem(await app.inject({ url: '/users/abc', headers: user.auth }), 422)
    expectProblem(await app.inject({ url: '/users/0', headers: user.auth }), 422)
    expectProblem(await app.inject({ url: `/users/${user.id}` }), 401)
  })
})

describe('GET /users?email= (invite by email)', () => {
  test('finds the account by exact email, case-insensitively, as the public profile only', async () => {
    const alice = await register(app, { name: 'Alice Lookup' })
    const bob = await register(app)
    const response = await app.inject({
      url: `/users?email=${encodeURIComponent(alice.email.toUpperCase())}`,
      headers: bob.auth,
    })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual([{ id: alice.id, name: 'Alice Lookup' }])
    expect(response.body).not.toContain('@')
  })

  test('an unregistered email is an empty list; no email or a bad one is 422; no token is 401', async () => {
    const user = await register(app)
    const none = await app.inject({ url: '/users?email=nobody-here%40example.com', headers: user.auth })
    expect(none.statusCode).toBe(200)
    expect(none.json()).toEqual([])
    expectProblem(await app.inject({ url: '/users', headers: user.auth }), 422)
    expectProblem(await app.inject({ url: '/users?email=not-an-email', headers: user.auth }), 422)
    expectProblem(await app.inject({ url: `/users?email=${encodeURIComponent(user.email)}` }), 401)
  })
})

describe('DELETE', () => {
  test('a user cannot delete another user: 403, and the user stays', async () => {
    const alice = await register(app)
    const bob = await register(app)
    expectProblem(await app.inject({ method: 'DELETE', url: `/users/${alice.id}`, headers: bob.auth }), 403)
    expect((await app.inject({ url: `/users/${alice.id}`, headers: bob.auth })).statusCode).toBe(200)
  })

  test('a user deletes themself by id; then 404', async () => {
    const user = await register(app)
    const response = await app.inject({ method: 'DELETE', url: `/users/${user.id}`, headers: user.auth })
    expect(response.statusCode).toBe(204)
    expect(response.body).toBe('')
    expectProblem(await app.inject({ url: `/users/${user.id}`, headers: admin.auth }), 404)
  })

  test('an admin deletes any user; unknown ids are 404', async () => {
    const user = await register(app)
    expect(
      (await app.inject({ method: 'DELETE', url: `/users/${user.id}`, headers: admin.auth })).statusCode,
    ).toBe(204)
    expectProblem(await app.inject({ method: 'DELETE', url: `/users/${user.id}`, headers: admin.auth }), 404)
  })

  test('the last admin cannot be deleted: 409', async () => {
    const response = await app.inject({ method: 'DELETE', url: '/users/me', headers: admin.auth })
    expectProblem(response, 409)
    expect((await app.inject({ url: '/users/me', headers: admin.auth })).statusCode).toBe(200)
  })
})

describe('roles', () => {
  test('only an admin changes roles; a promoted user’s next token says admin', async () => {
    const user = await register(app)
    const other = await register(app)
    expectProblem(await putRole(app, other.id, 'admin', user.auth), 403)
    const promoted = await putRole(app, user.id, 'admin', admin.auth)
    expect(promoted.json()).toMatchObject({ id: user.id, role: 'admin' })
    const token = await login(app, user.email, PASSWORD)
    expect(JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()).role).toBe('admin')
    expectProblem(await putRole(app, user.id, 'root', admin.auth), 422)
  })

  test('a demoted admin loses admin rights at once: the token that says admin is revoked, a new one is a user’s', async () => {
    const user = await register(app)
    await putRole(app, user.id, 'admin', admin.auth)
    const adminToken = { authorization: `Bearer ${await login(app, user.email, PASSWORD)}` }
    await putRole(app, user.id, 'user', admin.auth)
    const victim = await register(app)
    expectProblem(
      await app.inject({ method: 'DELETE', url: `/users/${victim.id}`, headers: adminToken }),
      401,
    )
    const userToken = { authorization: `Bearer ${await login(app, user.email, PASSWORD)}` }
    expectProblem(await app.inject({ method: 'DELETE', url: `/users/${victim.id}`, headers: userToken }), 403)
  })

  test('an admin cannot demote themself', async () => {
    expectProblem(await putRole(app, admin.id, 'user', admin.auth), 409)
  })
})

describe('first admin from configuration', () => {
  test('ADMIN_EMAIL creates the admin once; an existing account is promoted with its password untouched', async () => {
    const email = uniqueEmail('promoted')
    const user = await register(app, { email })
    const restarted = await buildApp(
      database.url,
      { ADMIN_EMAIL: email.toUpperCase(), ADMIN_PASSWORD: 'a different password' },
      ring,
    )
    try {
      const me = (await restarted.inject({ url: '/users/me', headers: user.auth })).json()
      expect(me).toMatchObject({ id: user.id, role: 'admin' })
      expect(await login(restarted, email, PASSWORD)).toEqual(expect.any(String))
    } finally {
      await restarted.close()
    }
  })

  test('replicas starting together with the same ADMIN_EMAIL make exactly one admin account', async () => {
    const email = uniqueEmail('together')
    const env = { ADMIN_EMAIL: email, ADMIN_PASSWORD: PASSWORD }
    const started = await Promise.all([buildApp(database.url, env, ring), buildApp(database.url, env, ring)])
    try {
      const rows = await query<{ role: string }>(
        database.url,
        'select role from users where lower(email) = lower($1)',
        [email],
      )
      expect(rows).toEqual([{ role: 'admin' }])
    } finally {
      for (const started_ of started) await started_.close()
    }
  })

  test('only one of ADMIN_EMAIL and ADMIN_PASSWORD: refuses to start', async () => {
    await expect(buildApp(database.url, { ADMIN_EMAIL: 'x@example.test' })).rejects.toThrow(
      /ADMIN_EMAIL and ADMIN_PASSWORD/,
    )
  })

  test('a role cannot be obtained from a request: registration never makes an admin', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/users',
      payload: { email: uniqueEmail(), name: 'Eve', password: PASSWORD, role: 'admin' },
    })
    expect(response.json().role).toBe('user')
  })
})

describe('signing key configuration', () => {
  test.each([
    ['not JSON', 'nope', /not valid JSON/],
    ['an empty array', '[]', /non-empty/],
    ['a key without kid', JSON.stringify([{ kty: 'OKP', crv: 'Ed25519', x: 'a', d: 'b' }]), /no kid/],
    [
      'a public key only',
      JSON.stringify([{ kty: 'OKP', crv: 'Ed25519', x: 'a', kid: 'p' }]),
      /private Ed25519/,
    ],
    ['a duplicate kid', null, /same kid/],
  ])('JWT_PRIVATE_KEYS with %s refuses to start', async (_case, value, message) => {
    const keys =
      value ??
      JSON.stringify([
        ...JSON.parse((await newKeyRing('dup')).jwks),
        ...JSON.parse((await newKeyRing('dup')).jwks),
      ])
    await expect(buildApp(database.url, { JWT_PRIVATE_KEYS: keys })).rejects.toThrow(message)
  })
})
