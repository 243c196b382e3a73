import type { AddressInfo } from 'node:net'
import { startTestIssuer, type TestIssuer } from '@task-manager/auth/testing'
import type { App } from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { buildApp, countRows, validTask } from './helpers.js'

// The task-service with AUTH_MODE=required against a stand-in project-service that speaks the real one's
// contract (GET /projects/{p}/members/{u}, GET /memberships) over real HTTP.

const database = useTestDatabase()
let issuer: TestIssuer
let projects: ProjectServiceStub
let app: App

const ALICE = 101 // owner of project 1
const BOB = 102 // member of nothing
const CAROL = 103 // viewer of project 1
const DAVE = 104 // editor of project 1 and owner of project 2
const ADMIN = 900

interface ProjectServiceStub {
  url: string
  roles: Map<string, string>
  mode: 'ok' | 'error' | 'slow'
  calls: number
  close(): Promise<void>
}

function subjectOf(authorization: string | undefined): number | undefined {
  const payload = authorization?.split(' ')[1]?.split('.')[1]
  return payload ? Number(JSON.parse(Buffer.from(payload, 'base64url').toString()).sub) : undefined
}

async function startProjectServiceStub(): Promise<ProjectServiceStub> {
  const server: FastifyInstance = Fastify({ logger: false })
  const stub = { roles: new Map<string, string>(), mode: 'ok' as ProjectServiceStub['mode'], calls: 0 }
  server.addHook('onRequest', async (request, reply) => {
    stub.calls++
    if (!request.headers.authorization) return reply.code(401).send({ status: 401 })
    if (stub.mode === 'error') return reply.code(500).send({ status: 500 })
    if (stub.mode === 'slow') await new Promise((resolve) => setTimeout(resolve, 3000))
  })
  server.get<{ Params: { p: string; u: string } }>('/projects/:p/members/:u', async (request, reply) => {
    const role = stub.roles.get(`${request.params.p}:${request.params.u}`)
    if (!role) return reply.code(404).send({ status: 404 })
    return { project_id: Number(request.params.p), user_id: Number(request.params.u), role }
  })
  server.get('/memberships', async (request) => {
    const caller = subjectOf(request.headers.authorization)
    return [...stub.roles.entries()]
      .filter(([key]) => Number(key.split(':')[1]) === caller)
      .map(([key, role]) => ({ project_id: Number(key.split(':')[0]), user_id: caller, role }))
  })
  await server.listen({ host: '127.0.0.1', port: 0 })
  const { port } = server.server.address() as AddressInfo
  return Object.assign(stub, { url: `http://127.0.0.1:${port}`, close: () => server.close() })
}

const tokens: Record<number, string> = {}
const as = (user: number) => ({ authorization: `Bearer ${tokens[user]}` })

beforeAll(async () => {
  issuer = await startTestIssuer()
  projects = await startProjectServiceStub()
  for (const user of [ALICE, BOB, CAROL, DAVE]) tokens[user] = await issuer.sign({ sub: user, role: 'user' })
  tokens[ADMIN] = await issuer.sign({ sub: ADMIN, role: 'admin' })
  app = await buildApp(database.url, {
    AUTH_MODE: 'required',
    JWKS_URL: issuer.jwksUrl,
    PROJECT_SERVICE_URL: projects.url,
    PROJECT_SERVICE_TIMEOUT_MS: '300',
    PROJECT_SERVICE_BREAKER_MIN_CALLS: '1000',
    MEMBERSHIP_CACHE_TTL_MS: '0',
  })
})
afterAll(async () => {
  await app?.close()
  await projects?.close()
  await issuer?.close()
})
beforeEach(() => {
  projects.mode = 'ok'
  projects.roles = new Map([
    [`1:${ALICE}`, 'owner'],
    [`1:${CAROL}`, 'viewer'],
    [`1:${DAVE}`, 'editor'],
    [`2:${DAVE}`, 'owner'],
  ])
})

async function createAs(user: number, body: Record<string, unknown> = {}) {
  const { user_id: _ignored, ...task } = validTask
  return app.inject({
    method: 'POST',
    url: '/tasks',
    headers: as(user),
    payload: { ...task, project_id: 1, ...body },
  })
}

describe('authentication', () => {
  test.each([
    ['GET', '/tasks'],
    ['GET', '/tasks/1'],
    ['POST', '/tasks'],
    ['PUT', '/tasks/1'],
    ['PATCH', '/tasks/1'],
    ['PATCH', '/tasks/1/status'],
    ['DELETE', '/tasks/1'],
  ] as const)('%s %s without a token: 401 problem with a Bearer challenge', async (method, url) => {
    const response = await app.inject({
      method,
      url,
      payload: method === 'GET' || method === 'DELETE' ? undefined : validTask,
    })
    expect(response.statusCode).toBe(401)
    expect(response.headers['www-authenticate']).toMatch(/^Bearer/)
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
  })

  test('expired, forged and URL-borne tokens are refused', async () => {
    const expired = await issuer.sign({ sub: ALICE, exp: Math.floor(Date.now() / 1000) - 60 })
    const unsigned = issuer.forgeUnsigned({ sub: ALICE })
    const hmac = await issuer.forgeHmacWithPublicKey({ sub: ALICE })
    for (const token of [expired, unsigned, hmac]) {
      const response = await app.inject({ url: '/tasks', headers: { authorization: `Bearer ${token}` } })
      expect(response.statusCode).toBe(401)
    }
    expect((await app.inject({ url: `/tasks?access_token=${tokens[ALICE]}` })).statusCode).toBe(401)
  })
})

describe('object-level authorization', () => {
  test('the assignee defaults to the caller; members read, outsiders get 404 and see nothing in lists', async () => {
    const created = await createAs(ALICE)
    expect(created.statusCode, created.body).toBe(201)
    const task = created.json()
    expect(task.user_id).toBe(ALICE)

    expect((await app.inject({ url: `/tasks/${task.id}`, headers: as(CAROL) })).statusCode).toBe(200)
    const outsider = await app.inject({ url: `/tasks/${task.id}`, headers: as(BOB) })
    expect(outsider.statusCode).toBe(404)
    expect(outsider.json().detail).toBe(`Task ${task.id} not found`)

    const bobsList = await app.inject({ url: '/tasks?limit=200', headers: as(BOB) })
    expect(bobsList.json()).toEqual([])
    const filtered = await app.inject({ url: `/tasks?project_id=1&user_id=${ALICE}`, headers: as(BOB) })
    expect(filtered.json()).toEqual([])
    const carolsList = await app.inject({ url: '/tasks?limit=200', headers: as(CAROL) })
    expect(carolsList.json().map((t: { id: number }) => t.id)).toContain(task.id)
  })

  test('outsiders cannot change or delete a task they cannot see: 404, and nothing changes', async () => {
    const task = (await createAs(ALICE)).json()
    const attempts = [
      app.inject({
        method: 'PUT',
        url: `/tasks/${task.id}`,
        headers: as(BOB),
        payload: { title: 'x', project_id: 1 },
      }),
      app.inject({ method: 'PATCH', url: `/tasks/${task.id}`, headers: as(BOB), payload: { title: 'x' } }),
      app.inject({
        method: 'PATCH',
        url: `/tasks/${task.id}/status`,
        headers: as(BOB),
        payload: { status: 'done' },
      }),
      app.inject({ method: 'DELETE', url: `/tasks/${task.id}`, headers: as(BOB) }),
    ]
    for (const response of await Promise.all(attempts)) expect(response.statusCode).toBe(404)
    expect((await app.inject({ url: `/tasks/${task.id}`, headers: as(ALICE) })).json()).toEqual(task)
  })

  test('viewers read but may not write: 403', async () => {
    const task = (await createAs(ALICE)).json()
    const patch = await app.inject({
      method: 'PATCH',
      url: `/tasks/${task.id}`,
      headers: as(CAROL),
      payload: { title: 'x' },
    })
    expect(patch.statusCode).toBe(403)
    expect((await createAs(CAROL)).statusCode).toBe(403)
    const del = await app.inject({ method: 'DELETE', url: `/tasks/${task.id}`, headers: as(CAROL) })
    expect(del.statusCode).toBe(403)
  })

  test('editors write; moving a task needs write access to the target project', async () => {
    const task = (await createAs(ALICE)).json()
    const edited = await app.inject({
      method: 'PATCH',
      url: `/tasks/${task.id}`,
      headers: as(DAVE),
      payload: { title: 'by Dave' },
    })
    expect(edited.statusCode).toBe(200)
    const move = await app.inject({
      method: 'PATCH',
      url: `/tasks/${task.id}`,
      headers: as(ALICE),
      payload: { project_id: 2 },
    })
    expect(move.statusCode).toBe(422)
    const moved = await app.inject({
      method: 'PATCH',
      url: `/tasks/${task.id}`,
      headers: as(DAVE),
      payload: { project_id: 2, user_id: DAVE },
    })
    expect(moved.statusCode).toBe(200)
    expect((await app.inject({ url: `/tasks/${task.id}`, headers: as(ALICE) })).statusCode).toBe(404)
  })

  test('a task in a project that does not exist, or for a non-member assignee, is a 422 with a clear detail', async () => {
    const before = await countRows(database.url, 'tasks')
    const unknown = await createAs(ALICE, { project_id: 999 })
    expect(unknown.statusCode).toBe(422)
    expect(unknown.json().detail).toBe('Project 999 does not exist or you are not a member of it')
    const nonMember = await createAs(ALICE, { user_id: BOB })
    expect(nonMember.statusCode).toBe(422)
    expect(nonMember.json().detail).toBe(`User ${BOB} is not a member of project 1`)
    const member = await createAs(ALICE, { user_id: CAROL })
    expect(member.statusCode).toBe(201)
    expect(member.json().user_id).toBe(CAROL)
    expect(await countRows(database.url, 'tasks')).toBe(before + 1)
  })

  test('administrators read every task', async () => {
    const task = (await createAs(ALICE)).json()
    expect((await app.inject({ url: `/tasks/${task.id}`, headers: as(ADMIN) })).statusCode).toBe(200)
  })

  test('Idempotency-Keys are per caller: the same key from two users creates two tasks', async () => {
    const headers = (user: number) => ({ ...as(user), 'idempotency-key': 'shared-key' })
    const { user_id: _ignored, ...task } = validTask
    const a = await app.inject({
      method: 'POST',
      url: '/tasks',
      headers: headers(ALICE),
      payload: { ...task, project_id: 1 },
    })
    const d = await app.inject({
      method: 'POST',
      url: '/tasks',
      headers: headers(DAVE),
      payload: { ...task, project_id: 1 },
    })
    expect(a.statusCode).toBe(201)
    expect(d.statusCode).toBe(201)
    expect(a.json().id).not.toBe(d.json().id)
  })
})

describe('when the project-service cannot answer', () => {
  test.each(['error', 'slow'] as const)(
    '%s: 503 problem with Retry-After, nothing written, never a silent accept',
    async (mode) => {
      const task = (await createAs(ALICE)).json()
      projects.mode = mode
      const before = await countRows(database.url, 'tasks')
      const started = Date.now()
      const create = await createAs(ALICE)
      expect(create.statusCode).toBe(503)
      expect(create.headers['retry-after']).toBeDefined()
      expect(create.json()).toMatchObject({
        type: 'urn:task-manager:problem:dependency-unavailable',
        upstream: 'project-service',
      })
      expect((await app.inject({ url: `/tasks/${task.id}`, headers: as(ALICE) })).statusCode).toBe(503)
      expect((await app.inject({ url: '/tasks', headers: as(ALICE) })).statusCode).toBe(503)
      expect(Date.now() - started).toBeLessThan(2500)
      expect(await countRows(database.url, 'tasks')).toBe(before)
    },
  )
})

describe('membership cache (MEMBERSHIP_CACHE_TTL_MS)', () => {
  let cached: App
  beforeAll(async () => {
    cached = await buildApp(database.url, {
      AUTH_MODE: 'required',
      JWKS_URL: issuer.jwksUrl,
      PROJECT_SERVICE_URL: projects.url,
      MEMBERSHIP_CACHE_TTL_MS: '400',
    })
  })
  afterAll(async () => {
    await cached?.close()
  })

  test('a confirmed membership is reused for its TTL: one lookup for many requests', async () => {
    const task = (await createAs(ALICE)).json()
    const before = projects.calls
    const reads = await Promise.all(
      Array.from({ length: 10 }, () => cached.inject({ url: `/tasks/${task.id}`, headers: as(DAVE) })),
    )
    expect(reads.map((response) => response.statusCode)).toEqual(Array(10).fill(200))
    expect(projects.calls - before).toBe(1)
  })

  test('a removed member keeps access at most the TTL; a newly added one is seen at once', async () => {
    const task = (await createAs(ALICE)).json()
    expect((await cached.inject({ url: `/tasks/${task.id}`, headers: as(CAROL) })).statusCode).toBe(200)
    projects.roles.delete(`1:${CAROL}`)
    await new Promise((resolve) => setTimeout(resolve, 450))
    expect((await cached.inject({ url: `/tasks/${task.id}`, headers: as(CAROL) })).statusCode).toBe(404)

    expect((await cached.inject({ url: `/tasks/${task.id}`, headers: as(BOB) })).statusCode).toBe(404)
    projects.roles.set(`1:${BOB}`, 'viewer')
    expect((await cached.inject({ url: `/tasks/${task.id}`, headers: as(BOB) })).statusCode).toBe(200)
  })

  test('a failed lookup is not remembered', async () => {
    const task = (await createAs(ALICE)).json()
    projects.mode = 'error'
    expect((await cached.inject({ url: `/tasks/${task.id}`, headers: as(CAROL) })).statusCode).toBe(503)
    projects.mode = 'ok'
    expect((await cached.inject({ url: `/tasks/${task.id}`, headers: as(CAROL) })).statusCode).toBe(200)
  })
})
