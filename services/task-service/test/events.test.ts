import { startTestIssuer, type TestIssuer } from '@task-manager/auth/testing'
import { EventBus, type EventData, type EventType, newEvent, STREAMS } from '@task-manager/events'
import type { App } from '@task-manager/service-kit'
import { useNatsServer, useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp, countRows, validTask } from './helpers.js'

// The task-service against a real nats-server and PostgreSQL, fed the project-service's events as they
// travel (the same envelopes on the same subjects). The project-service itself is down throughout
// (PROJECT_SERVICE_URL points at a closed port): access comes from the local read model alone.
const database = useTestDatabase('tasks_events')
const nats = useNatsServer()
let issuer: TestIssuer
let app: App
let bus: EventBus
const ALICE = 11
const BOB = 12
const tokens: Record<number, string> = {}

async function publish<T extends EventType>(type: T, data: EventData<T>): Promise<void> {
  await bus.publish(newEvent(type, data, { producer: 'project-service' }))
}

async function eventually<T>(
  probe: () => Promise<T>,
  accept: (value: T) => boolean,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (accept(value) || Date.now() > deadline) return value
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

const as = (user: number) => ({ authorization: `Bearer ${tokens[user]}` })

/** POST /tasks as `user` in `projectId`, repeated until it answers `status`: until the event that decides it applied. */
const createUntil = (user: number, status: number, projectId = 1) =>
  eventually(
    () =>
      app.inject({
        method: 'POST',
        url: '/tasks',
        headers: as(user),
        payload: { ...validTask, project_id: projectId, user_id: user },
      }),
    (response) => response.statusCode === status,
  )

beforeAll(async () => {
  issuer = await startTestIssuer()
  tokens[ALICE] = await issuer.sign({ sub: ALICE, role: 'user' })
  tokens[BOB] = await issuer.sign({ sub: BOB, role: 'user' })
  app = await buildApp(database.url, {
    AUTH_MODE: 'required',
    JWKS_URL: issuer.jwksUrl,
    PROJECT_SERVICE_URL: 'http://127.0.0.1:9',
    PROJECT_SERVICE_TIMEOUT_MS: '200',
    NATS_URL: nats.url,
  })
  bus = new EventBus({ url: nats.url, name: 'test-publisher' })
  await bus.ensureStream(STREAMS.projects)
})

afterAll(async () => {
  await bus?.close()
  await app?.close()
  await issuer?.close()
})

describe('task access from the membership read model (project-service down)', () => {
  it('a member added by event reads and writes tasks; a non-member sees none', async () => {
    await publish('projects.member.added', { project_id: 1, user_id: ALICE, role: 'owner' })
    const created = await createUntil(ALICE, 201)
    expect(created.statusCode).toBe(201)
    const id = created.json().id
    expect((await app.inject({ url: `/tasks/${id}`, headers: as(ALICE) })).statusCode).toBe(200)
    const list = await app.inject({ url: '/tasks', headers: as(ALICE) })
    expect(list.json().map((task: { id: number }) => task.id)).toEqual([id])
    // Bob is no member: the task does not exist for him, lists are empty (the project-service being
    // down makes no difference to reads).
    expect((await app.inject({ url: `/tasks/${id}`, headers: as(BOB) })).statusCode).toBe(404)
    expect((await app.inject({ url: '/tasks', headers: as(BOB) })).json()).toEqual([])
  })

  it('a role changed to viewer by event: reads yes, writes 403', async () => {
    await publish('projects.member.added', { project_id: 1, user_id: BOB, role: 'editor' })
    await publish('projects.member.role_changed', {
      project_id: 1,
      user_id: BOB,
      role: 'viewer',
      previous_role: 'editor',
    })
    const write = await createUntil(BOB, 403)
    expect(write.statusCode).toBe(403)
    expect((await app.inject({ url: '/tasks', headers: as(BOB) })).json()).toHaveLength(1)
  })

  it('a removed member loses access and their tasks pass to the successor the event names', async () => {
    await publish('projects.member.role_changed', {
      project_id: 1,
      user_id: BOB,
      role: 'editor',
      previous_role: 'viewer',
    })
    const bobs = await createUntil(BOB, 201)
    expect(bobs.statusCode).toBe(201)
    await publish('projects.member.removed', {
      project_id: 1,
      user_id: BOB,
      reason: 'user_deleted',
      successor_id: ALICE,
    })
    const gone = await eventually(
      () => app.inject({ url: `/tasks/${bobs.json().id}`, headers: as(BOB) }),
      (response) => response.statusCode === 404,
    )
    expect(gone.statusCode).toBe(404)
    const task = (await app.inject({ url: `/tasks/${bobs.json().id}`, headers: as(ALICE) })).json()
    expect(task.user_id).toBe(ALICE)
    expect(task.version).toBe(2)
  })

  it('a deleted project takes its tasks with it, from the API and from the database', async () => {
    await publish('projects.member.added', { project_id: 2, user_id: ALICE, role: 'owner' })
    const other = await createUntil(ALICE, 201, 2)
    expect(other.statusCode).toBe(201)
    const before = await countRows(database.url, 'tasks')
    await publish('projects.project.deleted', { project_id: 1, reason: 'deleted' })
    const list = await eventually(
      () => app.inject({ url: '/tasks', headers: as(ALICE) }),
      (response) => response.json().length === 1,
    )
    expect(list.json().map((task: { project_id: number }) => task.project_id)).toEqual([2])
    expect(await countRows(database.url, 'tasks')).toBe(1)
    expect(before).toBe(3)
    const metrics = await app.inject({ url: '/metrics' })
    expect(metrics.body).toMatch(/events_consumer_lag_seconds\{[^}]*consumer="task-service"[^}]*\} \d/)
    expect(metrics.body).toMatch(/events_consumed_total\{[^}]*outcome="applied"[^}]*\} ([6-9]|\d\d)/)
  })
})
