import { startTestIssuer, type TestIssuer } from '@task-manager/auth/testing'
import type { App } from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { bearer, buildApp, startUserServiceStub, type UserServiceStub } from './helpers.js'

// Alice owns a project; Erin is its editor, Vic its viewer; Bob has nothing to do with it; Ada is an
// administrator who is not a member.
const ALICE = 1
const BOB = 2
const ERIN = 3
const VIC = 4
const ADA = 9

const database = useTestDatabase()
let issuer: TestIssuer
let users: UserServiceStub
let app: App
const as: Record<'alice' | 'bob' | 'erin' | 'vic' | 'ada', Record<string, string>> = {} as never
let project: number
let bobsProject: number

beforeAll(async () => {
  issuer = await startTestIssuer()
  users = await startUserServiceStub([ALICE, BOB, ERIN, VIC, ADA])
  app = await buildApp(database.url, { JWKS_URL: issuer.jwksUrl, USER_SERVICE_URL: users.url })
  as.alice = bearer(await issuer.sign({ sub: ALICE }))
  as.bob = bearer(await issuer.sign({ sub: BOB }))
  as.erin = bearer(await issuer.sign({ sub: ERIN }))
  as.vic = bearer(await issuer.sign({ sub: VIC }))
  as.ada = bearer(await issuer.sign({ sub: ADA, role: 'admin' }))

  project = (
    await app.inject({ method: 'POST', url: '/projects', headers: as.alice, payload: { name: 'Secret' } })
  ).json().id
  for (const [user, role] of [
    [ERIN, 'editor'],
    [VIC, 'viewer'],
  ] as const) {
    const added = await app.inject({
      method: 'POST',
      url: `/projects/${project}/members`,
      headers: as.alice,
      payload: { user_id: user, role },
    })
    expect(added.statusCode).toBe(201)
  }
  bobsProject = (
    await app.inject({ method: 'POST', url: '/projects', headers: as.bob, payload: { name: 'Bob’s' } })
  ).json().id
})
afterAll(async () => {
  await app?.close()
  await users?.close()
  await issuer?.close()
})

describe('object-level authorization between two users (OWASP API1)', () => {
  test('a non-member gets 404 for every operation on the project, exactly as for a missing one', async () => {
    const missing = 2_000_000
    const attempts = (id: number) => [
      { method: 'GET' as const, url: `/projects/${id}` },
      { method: 'PATCH' as const, url: `/projects/${id}`, payload: { name: 'Mine now' } },
      { method: 'DELETE' as const, url: `/projects/${id}` },
      { method: 'GET' as const, url: `/projects/${id}/members` },
      { method: 'POST' as const, url: `/projects/${id}/members`, payload: { user_id: BOB, role: 'owner' } },
      { method: 'PATCH' as const, url: `/projects/${id}/members/${ALICE}`, payload: { role: 'viewer' } },
      { method: 'DELETE' as const, url: `/projects/${id}/members/${ALICE}` },
      { method: 'GET' as const, url: `/projects/${id}/members/${ALICE}` },
    ]
    const seenByUserService = users.requests.length
    for (const [attempt, againstMissing] of attempts(project).map(
      (a, i) => [a, attempts(missing)[i]] as const,
    )) {
      const response = await app.inject({ ...attempt, headers: as.bob })
      const reference = await app.inject({ ...againstMissing, headers: as.bob })
      expect(response.statusCode, `${attempt.method} ${attempt.url}`).toBe(404)
      expect(response.json().detail).toBe(`Project ${project} not found`)
      expect(reference.statusCode).toBe(404)
    }
    // Nothing changed, and Bob's attempt to add himself never even reached the user-service.
    expect(users.requests.length).toBe(seenByUserService)
    const still = await app.inject({ url: `/projects/${project}`, headers: as.alice })
    expect(still.json().name).toBe('Secret')
    const members = await app.inject({ url: `/projects/${project}/members`, headers: as.alice })
    expect(members.json().map((m: { user_id: number }) => m.user_id)).toEqual([ALICE, ERIN, VIC])
  })

  test("another user's project never appears in their list, and they can't list someone else's", async () => {
    const bobs = await app.inject({ url: '/projects', headers: as.bob })
    expect(bobs.json().map((p: { id: number }) => p.id)).toEqual([bobsProject])
    const alices = await app.inject({ url: '/projects', headers: as.alice })
    expect(alices.json().map((p: { id: number }) => p.id)).toEqual([project])

    const snooping = await app.inject({ url: `/projects?user_id=${ALICE}`, headers: as.bob })
    expect(snooping.statusCode).toBe(403)
  })

  test('the membership lookup answers only the user themself, members and administrators', async () => {
    // Bob asking about Alice in her project: as if it did not exist.
    expect(
      (await app.inject({ url: `/projects/${project}/members/${ALICE}`, headers: as.bob })).statusCode,
    ).toBe(404)
    // Bob asking about himself: not a member.
    const self = await app.inject({ url: `/projects/${project}/members/${BOB}`, headers: as.bob })
    expect(self.statusCode).toBe(404)
    // A member asking about anyone in the project.
    const byViewer = await app.inject({ url: `/projects/${project}/members/${ERIN}`, headers: as.vic })
    expect(byViewer.statusCode).toBe(200)
    expect(byViewer.json()).toEqual({ project_id: project, user_id: ERIN, role: 'editor' })
    const outsider = await app.inject({ url: `/projects/${project}/members/${BOB}`, headers: as.vic })
    expect(outsider.statusCode).toBe(404)
    expect(outsider.json().detail).toBe(`User ${BOB} is not a member of project ${project}`)
    // Themselves.
    const own = await app.inject({ url: `/projects/${project}/members/${VIC}`, headers: as.vic })
    expect(own.json()).toEqual({ project_id: project, user_id: VIC, role: 'viewer' })
    // An administrator.
    const admin = await app.inject({ url: `/projects/${project}/members/${ALICE}`, headers: as.ada })
    expect(admin.json()).toEqual({ project_id: project, user_id: ALICE, role: 'owner' })
  })
})

describe('GET /memberships (what the task-service filters task lists by)', () => {
  test("the caller's own memberships; another user's only for administrators", async () => {
    const alices = await app.inject({ url: '/memberships', headers: as.alice })
    expect(alices.statusCode).toBe(200)
    expect(alices.json()).toEqual([{ project_id: project, user_id: ALICE, role: 'owner' }])
    const vics = await app.inject({ url: '/memberships', headers: as.vic })
    expect(vics.json()).toEqual([{ project_id: project, user_id: VIC, role: 'viewer' }])
    expect((await app.inject({ url: '/memberships', headers: as.ada })).json()).toEqual([])

    const snooping = await app.inject({ url: `/memberships?user_id=${ALICE}`, headers: as.bob })
    expect(snooping.statusCode).toBe(403)
    const byAdmin = await app.inject({ url: `/memberships?user_id=${ERIN}`, headers: as.ada })
    expect(byAdmin.json()).toEqual([{ project_id: project, user_id: ERIN, role: 'editor' }])
    expect((await app.inject({ url: '/memberships' })).statusCode).toBe(401)
  })
})

describe('roles inside a project', () => {
  test('a viewer reads but may not edit, manage members or delete (403)', async () => {
    expect((await app.inject({ url: `/projects/${project}`, headers: as.vic })).json().role).toBe('viewer')
    expect((await app.inject({ url: `/projects/${project}/members`, headers: as.vic })).statusCode).toBe(200)
    const edit = await app.inject({
      method: 'PATCH',
      url: `/projects/${project}`,
      headers: as.vic,
      payload: { name: 'x' },
    })
    expect(edit.statusCode).toBe(403)
    expect(edit.json().detail).toMatch(/needs the owner or editor role; you are a viewer/)
    const promote = await app.inject({
      method: 'PATCH',
      url: `/projects/${project}/members/${VIC}`,
      headers: as.vic,
      payload: { role: 'owner' },
    })
    expect(promote.statusCode).toBe(403)
    expect(
      (await app.inject({ method: 'DELETE', url: `/projects/${project}`, headers: as.vic })).statusCode,
    ).toBe(403)
    expect(
      (await app.inject({ method: 'DELETE', url: `/projects/${project}/members/${ERIN}`, headers: as.vic }))
        .statusCode,
    ).toBe(403)
  })

  test('an editor edits the project but may not manage members or delete it', async () => {
    const edit = await app.inject({
      method: 'PATCH',
      url: `/projects/${project}`,
      headers: as.erin,
      payload: { description: 'Edited by Erin' },
    })
    expect(edit.statusCode).toBe(200)
    expect(edit.json()).toMatchObject({ description: 'Edited by Erin', role: 'editor' })
    const add = await app.inject({
      method: 'POST',
      url: `/projects/${project}/members`,
      headers: as.erin,
      payload: { user_id: BOB, role: 'viewer' },
    })
    expect(add.statusCode).toBe(403)
    expect(add.json().detail).toMatch(
      /needs the owner role; you are a editor|needs the owner role; you are an? editor/,
    )
    expect(
      (await app.inject({ method: 'DELETE', url: `/projects/${project}`, headers: as.erin })).statusCode,
    ).toBe(403)
  })

  test('an administrator reads any project and its members but changes nothing unless a member', async () => {
    const read = await app.inject({ url: `/projects/${project}`, headers: as.ada })
    expect(read.statusCode).toBe(200)
    expect(read.json().role).toBeNull()
    expect((await app.inject({ url: `/projects/${project}/members`, headers: as.ada })).statusCode).toBe(200)
    const edit = await app.inject({
      method: 'PATCH',
      url: `/projects/${project}`,
      headers: as.ada,
      payload: { name: 'x' },
    })
    expect(edit.statusCode).toBe(403)
    expect(
      (await app.inject({ method: 'DELETE', url: `/projects/${project}`, headers: as.ada })).statusCode,
    ).toBe(403)
    // Her own list holds only her projects; she may list someone else's.
    expect((await app.inject({ url: '/projects', headers: as.ada })).json()).toEqual([])
    const alices = await app.inject({ url: `/projects?user_id=${ALICE}`, headers: as.ada })
    expect(alices.json().map((p: { id: number; role: string }) => [p.id, p.role])).toEqual([
      [project, 'owner'],
    ])
  })

  test('a member may leave; afterwards the project is invisible to them', async () => {
    const joined = await app.inject({
      method: 'POST',
      url: `/projects/${bobsProject}/members`,
      headers: as.bob,
      payload: { user_id: VIC, role: 'viewer' },
    })
    expect(joined.statusCode).toBe(201)
    expect((await app.inject({ url: `/projects/${bobsProject}`, headers: as.vic })).statusCode).toBe(200)
    const leave = await app.inject({
      method: 'DELETE',
      url: `/projects/${bobsProject}/members/${VIC}`,
      headers: as.vic,
    })
    expect(leave.statusCode).toBe(204)
    expect((await app.inject({ url: `/projects/${bobsProject}`, headers: as.vic })).statusCode).toBe(404)
  })
})
