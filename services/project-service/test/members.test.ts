import type { AddressInfo } from 'node:net'
import { startTestIssuer, type TestIssuer } from '@task-manager/auth/testing'
import type { App } from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { bearer, buildApp, startUserServiceStub, type UserServiceStub } from './helpers.js'

const database = useTestDatabase()
let issuer: TestIssuer
let users: UserServiceStub
let app: App
let base: string
const tokens = new Map<number, Record<string, string>>()

async function as(user: number): Promise<Record<string, string>> {
  let headers = tokens.get(user)
  if (!headers) {
    headers = bearer(await issuer.sign({ sub: user }))
    tokens.set(user, headers)
  }
  return headers
}

async function newProject(owner: number, name = 'Members'): Promise<number> {
  const response = await app.inject({
    method: 'POST',
    url: '/projects',
    headers: await as(owner),
    payload: { name },
  })
  expect(response.statusCode).toBe(201)
  return response.json().id
}

async function addMember(project: number, by: number, userId: number, role: string) {
  return app.inject({
    method: 'POST',
    url: `/projects/${project}/members`,
    headers: await as(by),
    payload: { user_id: userId, role },
  })
}

async function ownersOf(project: number): Promise<number[]> {
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  try {
    const { rows } = await client.query(
      "select user_id from project_members where project_id = $1 and role = 'owner' order by user_id",
      [project],
    )
    return rows.map((row) => row.user_id)
  } finally {
    await client.end()
  }
}

beforeAll(async () => {
  issuer = await startTestIssuer()
  users = await startUserServiceStub(Array.from({ length: 50 }, (_, i) => i + 1))
  app = await buildApp(database.url, { JWKS_URL: issuer.jwksUrl, USER_SERVICE_URL: users.url })
  // Real HTTP for the concurrency tests: requests really run in parallel against the pool.
  await app.listen({ host: '127.0.0.1', port: 0 })
  base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
})
afterAll(async () => {
  await app?.close()
  await users?.close()
  await issuer?.close()
})

describe('adding members asks the user-service', () => {
  test('an existing user is added: 201, Location; the call carried the caller’s token and request id', async () => {
    const project = await newProject(1)
    const response = await app.inject({
      method: 'POST',
      url: `/projects/${project}/members`,
      headers: { ...(await as(1)), 'x-request-id': 'trace-me-123' },
      payload: { user_id: 7, role: 'editor' },
    })
    expect(response.statusCode).toBe(201)
    expect(response.json()).toMatchObject({ project_id: project, user_id: 7, role: 'editor' })
    expect(response.headers.location).toBe(`/projects/${project}/members/7`)

    const call = users.requests.at(-1)
    expect(call).toEqual({
      url: '/users/7',
      authorization: (await as(1)).authorization,
      requestId: 'trace-me-123',
    })

    const lookup = await app.inject({ url: `/projects/${project}/members/7`, headers: await as(7) })
    expect(lookup.json()).toEqual({ project_id: project, user_id: 7, role: 'editor' })
  })

  test('an unknown user → 422 "User N does not exist", nothing added', async () => {
    const project = await newProject(1)
    const response = await addMember(project, 1, 4242, 'viewer')
    expect(response.statusCode).toBe(422)
    expect(response.headers['content-type']).toContain('application/problem+json')
    expect(response.json().detail).toBe('User 4242 does not exist')
    const members = await app.inject({ url: `/projects/${project}/members`, headers: await as(1) })
    expect(members.json().map((m: { user_id: number }) => m.user_id)).toEqual([1])
  })

  test('re-adding with the same role is a safe retry (200); with another role 409 pointing to PATCH', async () => {
    const project = await newProject(1)
    expect((await addMember(project, 1, 8, 'viewer')).statusCode).toBe(201)
    const calls = users.requests.length
    const retry = await addMember(project, 1, 8, 'viewer')
    expect(retry.statusCode).toBe(200)
    expect(retry.json()).toMatchObject({ user_id: 8, role: 'viewer' })
    const conflict = await addMember(project, 1, 8, 'editor')
    expect(conflict.statusCode).toBe(409)
    expect(conflict.json().detail).toContain(`PATCH /projects/${project}/members/8`)
    // A known member needs no question to the user-service.
    expect(users.requests.length).toBe(calls)
  })

  test('the same member added by several requests at once: one 201, the others 200, never a 500', async () => {
    const project = await newProject(1)
    const post = async () =>
      fetch(`${base}/projects/${project}/members`, {
        method: 'POST',
        headers: { ...(await as(1)), 'content-type': 'application/json' },
        body: JSON.stringify({ user_id: 9, role: 'editor' }),
      })
    const statuses = (await Promise.all(Array.from({ length: 6 }, post))).map((r) => r.status).sort()
    expect(statuses).toEqual([200, 200, 200, 200, 200, 201])
    const members = await app.inject({ url: `/projects/${project}/members`, headers: await as(1) })
    expect(members.json().map((m: { user_id: number; role: string }) => [m.user_id, m.role])).toEqual([
      [1, 'owner'],
      [9, 'editor'],
    ])
  })

  test('a project holds at most MAX_MEMBERS_PER_PROJECT members (409 past it)', async () => {
    const small = await buildApp(database.url, {
      JWKS_URL: issuer.jwksUrl,
      USER_SERVICE_URL: users.url,
      MAX_MEMBERS_PER_PROJECT: '3',
    })
    try {
      const headers = await as(1)
      const project = (
        await small.inject({ method: 'POST', url: '/projects', headers, payload: { name: 'Small' } })
      ).json().id
      const add = (userId: number) =>
        small.inject({
          method: 'POST',
          url: `/projects/${project}/members`,
          headers,
          payload: { user_id: userId, role: 'viewer' },
        })
      expect((await add(2)).statusCode).toBe(201)
      expect((await add(3)).statusCode).toBe(201)
      const full = await add(4)
      expect(full.statusCode).toBe(409)
      expect(full.json().detail).toBe(`Project ${project} already has the maximum of 3 members`)
      // A retry of an existing membership is still answered.
      expect((await add(3)).statusCode).toBe(200)
    } finally {
      await small.close()
    }
  })

  test('bad member bodies are 422 problems naming the field', async () => {
    const project = await newProject(1)
    for (const [payload, field] of [
      [{ user_id: 5, role: 'admin' }, 'role'],
      [{ user_id: 0, role: 'viewer' }, 'user_id'],
      [{ role: 'viewer' }, 'user_id'],
      [{ user_id: 'five', role: 'viewer' }, 'user_id'],
    ] as const) {
      const response = await app.inject({
        method: 'POST',
        url: `/projects/${project}/members`,
        headers: await as(1),
        payload,
      })
      expect(response.statusCode, JSON.stringify(payload)).toBe(422)
      expect(response.json().errors.map((e: { field: string }) => e.field)).toContain(field)
    }
  })
})

describe('roles and the last owner', () => {
  test('PATCH changes a role; the last owner can neither step down nor be removed (409)', async () => {
    const project = await newProject(10)
    expect((await addMember(project, 10, 11, 'viewer')).statusCode).toBe(201)

    const promoted = await app.inject({
      method: 'PATCH',
      url: `/projects/${project}/members/11`,
      headers: await as(10),
      payload: { role: 'editor' },
    })
    expect(promoted.statusCode).toBe(200)
    expect(promoted.json()).toMatchObject({ user_id: 11, role: 'editor' })

    const stepDown = await app.inject({
      method: 'PATCH',
      url: `/projects/${project}/members/10`,
      headers: await as(10),
      payload: { role: 'editor' },
    })
    expect(stepDown.statusCode).toBe(409)
    expect(stepDown.json().detail).toMatch(/must keep at least one owner/)
    const leave = await app.inject({
      method: 'DELETE',
      url: `/projects/${project}/members/10`,
      headers: await as(10),
    })
    expect(leave.statusCode).toBe(409)
    expect(await ownersOf(project)).toEqual([10])

    // With a second owner, the first may step down.
    await app.inject({
      method: 'PATCH',
      url: `/projects/${project}/members/11`,
      headers: await as(10),
      payload: { role: 'owner' },
    })
    const handOver = await app.inject({
      method: 'PATCH',
      url: `/projects/${project}/members/10`,
      headers: await as(10),
      payload: { role: 'viewer' },
    })
    expect(handOver.statusCode).toBe(200)
    expect(await ownersOf(project)).toEqual([11])
    // …and has lost the right to manage members at once.
    const tooLate = await addMember(project, 10, 12, 'viewer')
    expect(tooLate.statusCode).toBe(403)
  })

  test('removing a member who is not one → 404; an owner removes a member → 204', async () => {
    const project = await newProject(20)
    expect((await addMember(project, 20, 21, 'editor')).statusCode).toBe(201)
    const removed = await app.inject({
      method: 'DELETE',
      url: `/projects/${project}/members/21`,
      headers: await as(20),
    })
    expect(removed.statusCode).toBe(204)
    const again = await app.inject({
      method: 'DELETE',
      url: `/projects/${project}/members/21`,
      headers: await as(20),
    })
    expect(again.statusCode).toBe(404)
    expect(again.json().detail).toBe(`User 21 is not a member of project ${project}`)
    expect((await app.inject({ url: `/projects/${project}`, headers: await as(21) })).statusCode).toBe(404)
  })

  test('two owners leaving at the same moment: exactly one succeeds, the project keeps one owner', async () => {
    for (let round = 0; round < 8; round += 1) {
      const project = await newProject(30)
      expect((await addMember(project, 30, 31, 'owner')).statusCode).toBe(201)
      const leave = async (user: number) =>
        fetch(`${base}/projects/${project}/members/${user}`, { method: 'DELETE', headers: await as(user) })
      const statuses = (await Promise.all([leave(30), leave(31)])).map((r) => r.status).sort()
      expect(statuses).toEqual([204, 409])
      expect((await ownersOf(project)).length).toBe(1)
    }
  })

  test('two owners demoting each other at the same moment never leave the project without an owner', async () => {
    for (let round = 0; round < 8; round += 1) {
      const project = await newProject(40)
      expect((await addMember(project, 40, 41, 'owner')).statusCode).toBe(201)
      const demote = async (by: number, user: number) =>
        fetch(`${base}/projects/${project}/members/${user}`, {
          method: 'PATCH',
          headers: { ...(await as(by)), 'content-type': 'application/json' },
          body: JSON.stringify({ role: 'viewer' }),
        })
      const statuses = (await Promise.all([demote(40, 41), demote(41, 40)])).map((r) => r.status).sort()
      // The second one runs after the first committed: its caller is no longer an owner.
      expect(statuses).toEqual([200, 403])
      expect((await ownersOf(project)).length).toBe(1)
    }
  })
})
