import { startTestIssuer, type TestIssuer } from '@task-manager/auth/testing'
import type { App } from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { bearer, buildApp, ISO_UTC } from './helpers.js'

const database = useTestDatabase()
let issuer: TestIssuer
let app: App
let alice: Record<string, string>

beforeAll(async () => {
  issuer = await startTestIssuer()
  app = await buildApp(database.url, { JWKS_URL: issuer.jwksUrl })
  alice = bearer(await issuer.sign({ sub: 1 }))
})
afterAll(async () => {
  await app?.close()
  await issuer?.close()
})

const create = (body: Record<string, unknown>, headers = alice) =>
  app.inject({ method: 'POST', url: '/projects', headers, payload: body })

describe('projects', () => {
  test('POST /projects creates a project owned by the caller: 201, Location, UTC timestamps', async () => {
    const response = await create({ name: '  Launch  ', description: 'Ship 1.0' })
    expect(response.statusCode).toBe(201)
    const project = response.json()
    expect(project).toMatchObject({
      name: 'Launch',
      description: 'Ship 1.0',
      status: 'active',
      role: 'owner',
    })
    expect(project.created_at).toMatch(ISO_UTC)
    expect(project.updated_at).toMatch(ISO_UTC)
    expect(response.headers.location).toBe(`/projects/${project.id}`)

    const members = await app.inject({ url: `/projects/${project.id}/members`, headers: alice })
    expect(members.statusCode).toBe(200)
    expect(members.json()).toEqual([
      expect.objectContaining({
        project_id: project.id,
        user_id: 1,
        role: 'owner',
        created_at: expect.stringMatching(ISO_UTC),
      }),
    ])
  })

  test('GET /projects/{id} answers the project; PATCH changes only what is sent', async () => {
    const { id } = (await create({ name: 'Website' })).json()
    const read = await app.inject({ url: `/projects/${id}`, headers: alice })
    expect(read.statusCode).toBe(200)
    expect(read.json()).toMatchObject({ id, name: 'Website', description: '', status: 'active' })

    const patched = await app.inject({
      method: 'PATCH',
      url: `/projects/${id}`,
      headers: alice,
      payload: { status: 'archived' },
    })
    expect(patched.statusCode).toBe(200)
    expect(patched.json()).toMatchObject({ id, name: 'Website', status: 'archived', role: 'owner' })
    expect(Date.parse(patched.json().updated_at)).toBeGreaterThanOrEqual(Date.parse(read.json().updated_at))
    expect((await app.inject({ url: `/projects/${id}`, headers: alice })).json().status).toBe('archived')
  })

  test('DELETE /projects/{id} answers 204, then the project and its memberships are gone', async () => {
    const { id } = (await create({ name: 'Short-lived' })).json()
    const deleted = await app.inject({ method: 'DELETE', url: `/projects/${id}`, headers: alice })
    expect(deleted.statusCode).toBe(204)
    expect(deleted.body).toBe('')
    const again = await app.inject({ url: `/projects/${id}`, headers: alice })
    expect(again.statusCode).toBe(404)
    expect(again.json().detail).toBe(`Project ${id} not found`)
    expect((await app.inject({ url: `/projects/${id}/members/1`, headers: alice })).statusCode).toBe(404)
    expect((await app.inject({ method: 'DELETE', url: `/projects/${id}`, headers: alice })).statusCode).toBe(
      404,
    )
  })

  test('GET /projects lists the caller’s projects in pages linked by rel="next", filtered by status', async () => {
    const me = bearer(await issuer.sign({ sub: 500 }))
    const ids: number[] = []
    for (let i = 0; i < 5; i += 1) {
      ids.push((await create({ name: `Page ${i}`, status: i === 2 ? 'archived' : 'active' }, me)).json().id)
    }
    const seen: number[] = []
    let url: string | undefined = '/projects?limit=2'
    let pages = 0
    while (url) {
      const page: Awaited<ReturnType<App['inject']>> = await app.inject({ url, headers: me })
      expect(page.statusCode).toBe(200)
      seen.push(...page.json().map((p: { id: number }) => p.id))
      url = /<([^>]+)>; rel="next"/.exec(String(page.headers.link ?? ''))?.[1]
      pages += 1
    }
    expect(seen).toEqual(ids)
    expect(pages).toBe(3)

    const archived = await app.inject({ url: '/projects?status=archived', headers: me })
    expect(archived.json().map((p: { id: number }) => p.id)).toEqual([ids[2]])

    // The same user's memberships, paged the same way.
    const memberships: number[] = []
    let next: string | undefined = '/memberships?limit=2'
    while (next) {
      const page: Awaited<ReturnType<App['inject']>> = await app.inject({ url: next, headers: me })
      expect(page.statusCode).toBe(200)
      for (const m of page.json()) {
        expect(m).toMatchObject({ user_id: 500, role: 'owner' })
        memberships.push(m.project_id)
      }
      next = /<([^>]+)>; rel="next"/.exec(String(page.headers.link ?? ''))?.[1]
    }
    expect(memberships).toEqual(ids)
  })

  test('a cursor that this service did not issue is a 422 problem', async () => {
    const response = await app.inject({ url: '/projects?cursor=not-a-cursor', headers: alice })
    expect(response.statusCode).toBe(422)
    expect(response.headers['content-type']).toContain('application/problem+json')
    expect(response.json().errors[0]).toMatchObject({ in: 'querystring', field: 'cursor' })
  })
})

describe('bad input is a 422 problem+json naming the field', () => {
  test.each([
    ['missing name', {}, 'name'],
    ['empty name', { name: '' }, 'name'],
    ['blank name', { name: '    ' }, 'name'],
    ['name over 200 characters', { name: 'x'.repeat(201) }, 'name'],
    ['unknown status', { name: 'ok', status: 'deleted' }, 'status'],
    ['description over 2000 characters', { name: 'ok', description: 'x'.repeat(2001) }, 'description'],
  ])('POST with %s → 422', async (_case, body, field) => {
    const response = await create(body)
    expect(response.statusCode).toBe(422)
    expect(response.headers['content-type']).toContain('application/problem+json')
    expect(response.json().errors.map((e: { field: string }) => e.field)).toContain(field)
  })

  test('an empty PATCH and a non-numeric id are refused', async () => {
    const { id } = (await create({ name: 'Target' })).json()
    const empty = await app.inject({ method: 'PATCH', url: `/projects/${id}`, headers: alice, payload: {} })
    expect(empty.statusCode).toBe(422)
    const badId = await app.inject({ url: '/projects/abc', headers: alice })
    expect(badId.statusCode).toBe(422)
    expect(badId.json().errors[0]).toMatchObject({ in: 'params', field: 'id' })
  })

  test('a body that is not JSON is a 400 problem, never a 500', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/projects',
      headers: { ...alice, 'content-type': 'application/json' },
      payload: '{"name":',
    })
    expect(response.statusCode).toBe(400)
    expect(response.headers['content-type']).toContain('application/problem+json')
  })
})

describe('mass assignment (OWASP API3)', () => {
  test('owner_id is refused with authentication on: the caller becomes the owner', async () => {
    const response = await create({ name: 'Hijack', owner_id: 2 })
    expect(response.statusCode).toBe(422)
    expect(response.json().detail).toMatch(/owner_id/)
  })

  test('id, role, created_at and created_by sent by the client are ignored', async () => {
    const response = await create({
      name: 'Assigned',
      id: 999_999,
      role: 'viewer',
      created_at: '2000-01-01T00:00:00Z',
      created_by: 2,
    })
    expect(response.statusCode).toBe(201)
    const project = response.json()
    expect(project.id).not.toBe(999_999)
    expect(project.role).toBe('owner')
    expect(project.created_at.startsWith('2000')).toBe(false)
    expect(Object.keys(project).sort()).toEqual([
      'created_at',
      'description',
      'id',
      'name',
      'role',
      'status',
      'updated_at',
    ])
  })
})

describe('authentication (a service reached directly still checks tokens)', () => {
  test('no token → 401 with a Bearer challenge', async () => {
    const response = await app.inject({ url: '/projects' })
    expect(response.statusCode).toBe(401)
    expect(response.headers['www-authenticate']).toMatch(/^Bearer/)
    expect(response.headers['content-type']).toContain('application/problem+json')
  })

  test.each([
    ['expired', () => issuer.sign({ sub: 1, exp: Math.floor(Date.now() / 1000) - 600 })],
    ['wrong audience', () => issuer.sign({ sub: 1, aud: 'someone-else' })],
    ['wrong issuer', () => issuer.sign({ sub: 1, iss: 'evil' })],
    ['alg none', async () => issuer.forgeUnsigned({ sub: 1 })],
    ['HMAC with the public key', () => issuer.forgeHmacWithPublicKey({ sub: 1 })],
    ['a foreign key', () => issuer.forgeWithForeignKey({ sub: 1 })],
  ])('%s token → 401, nothing created', async (_name, makeToken) => {
    const response = await create({ name: 'Should not exist' }, bearer(await makeToken()))
    expect(response.statusCode).toBe(401)
    const mine = await app.inject({ url: '/projects?limit=200', headers: alice })
    expect(mine.json().some((p: { name: string }) => p.name === 'Should not exist')).toBe(false)
  })

  test('a token in the URL is not accepted', async () => {
    const token = await issuer.sign({ sub: 1 })
    const response = await app.inject({ url: `/projects?access_token=${token}` })
    expect(response.statusCode).toBe(401)
  })

  test('the OpenAPI document describes every project route', async () => {
    const { paths } = (await app.inject({ url: '/openapi.json' })).json()
    expect(Object.keys(paths).sort()).toEqual([
      '/memberships',
      '/projects',
      '/projects/{id}',
      '/projects/{id}/members',
      '/projects/{id}/members/{userId}',
    ])
    expect(Object.keys(paths['/projects/{id}/members/{userId}']).sort()).toEqual(['delete', 'get', 'patch'])
  })

  test('health, metrics and the OpenAPI document need no token', async () => {
    for (const url of ['/health/live', '/health/ready', '/health', '/metrics', '/openapi.json']) {
      expect((await app.inject({ url })).statusCode, url).toBe(200)
    }
  })
})
