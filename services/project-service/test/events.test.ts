import { type EventEnvelope, newEvent, STREAMS } from '@task-manager/events'
import { type EventRecorder, startEventRecorder } from '@task-manager/events/testing'
import type { App } from '@task-manager/service-kit'
import { useNatsServer, useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp, startUserServiceStub, type UserServiceStub } from './helpers.js'

// The project-service against a real nats-server: every change to projects and members leaves as an
// event on the PROJECTS stream (through the outbox and the relay), and a deleted user leaves their
// projects by the last-owner rule.
const database = useTestDatabase('projects_events')
const nats = useNatsServer()
let app: App
let users: UserServiceStub
let recorder: EventRecorder
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

beforeAll(async () => {
  users = await startUserServiceStub([1, 2, 3, 4, 5])
  app = await buildApp(database.url, {
    AUTH_MODE: 'disabled',
    USER_SERVICE_URL: users.url,
    NATS_URL: nats.url,
    EVENTS_RELAY_POLL_MS: '50',
  })
  recorder = startEventRecorder({
    url: nats.url,
    stream: STREAMS.projects,
    types: [
      'projects.member.added',
      'projects.member.role_changed',
      'projects.member.removed',
      'projects.project.deleted',
    ],
  })
})

afterAll(async () => {
  await recorder?.close()
  await app?.close()
  await users?.close()
})

async function next(count: number): Promise<EventEnvelope[]> {
  const deadline = Date.now() + 15_000
  while (recorder.seen.length < count && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 25))
  return recorder.seen.slice(0, count)
}

const summary = (event: EventEnvelope) => `${event.type} ${JSON.stringify(event.data)}`

describe('project events', () => {
  it('every change leaves as a versioned event, in order, with the request’s traceparent', async () => {
    const headers = { traceparent: TRACEPARENT }
    const project = await app.inject({
      method: 'POST',
      url: '/projects',
      headers,
      payload: { name: 'Launch', owner_id: 1 },
    })
    expect(project.statusCode).toBe(201)
    const id = project.json().id
    expect(
      (
        await app.inject({
          method: 'POST',
          url: `/projects/${id}/members`,
          headers,
          payload: { user_id: 2, role: 'editor' },
        })
      ).statusCode,
    ).toBe(201)
    expect(
      (
        await app.inject({
          method: 'PATCH',
          url: `/projects/${id}/members/2`,
          headers,
          payload: { role: 'viewer' },
        })
      ).statusCode,
    ).toBe(200)
    expect(
      (await app.inject({ method: 'DELETE', url: `/projects/${id}/members/2`, headers })).statusCode,
    ).toBe(204)
    expect((await app.inject({ method: 'DELETE', url: `/projects/${id}`, headers })).statusCode).toBe(204)
    const events = await next(5)
    expect(events.map(summary)).toEqual([
      `projects.member.added {"project_id":${id},"user_id":1,"role":"owner"}`,
      `projects.member.added {"project_id":${id},"user_id":2,"role":"editor"}`,
      `projects.member.role_changed {"project_id":${id},"user_id":2,"role":"viewer","previous_role":"editor"}`,
      `projects.member.removed {"project_id":${id},"user_id":2,"reason":"removed","successor_id":1}`,
      `projects.project.deleted {"project_id":${id},"reason":"deleted"}`,
    ])
    for (const event of events) {
      expect(event).toMatchObject({
        schema_version: 1,
        aggregate_type: 'project',
        aggregate_id: String(id),
        producer: 'project-service',
        traceparent: TRACEPARENT,
      })
      expect(Date.parse(event.occurred_at)).toBeGreaterThan(Date.now() - 60_000)
    }
  })

  it('a failed change writes no event (same transaction)', async () => {
    const before = recorder.seen.length
    const project = await app.inject({
      method: 'POST',
      url: '/projects',
      payload: { name: 'Solo', owner_id: 1 },
    })
    // The last owner cannot leave: refused, nothing written, nothing published.
    const refused = await app.inject({ method: 'DELETE', url: `/projects/${project.json().id}/members/1` })
    expect(refused.statusCode).toBe(409)
    await next(before + 1)
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(recorder.seen.slice(before).map((event) => event.type)).toEqual(['projects.member.added'])
  })

  it('a deleted user leaves every project: a sole owner’s project passes to the senior member, an empty one is deleted', async () => {
    const start = recorder.seen.length
    const create = async (name: string) =>
      (await app.inject({ method: 'POST', url: '/projects', payload: { name, owner_id: 3 } })).json()
        .id as number
    const shared = await create('Shared')
    const alone = await create('Alone')
    const coOwned = await create('Co-owned')
    const add = (project: number, user: number, role: string) =>
      app.inject({ method: 'POST', url: `/projects/${project}/members`, payload: { user_id: user, role } })
    await add(shared, 5, 'viewer')
    await add(shared, 4, 'editor')
    await add(coOwned, 4, 'owner')
    // The six events of the set-up first (three projects created, three members added).
    await next(start + 6)
    const before = recorder.seen.length
    expect(before).toBe(start + 6)
    await recorder.bus.publish(
      newEvent(
        'users.user.deleted',
        { user_id: 3, valid_after: 1 },
        { producer: 'user-service', traceparent: TRACEPARENT },
      ),
    )
    // shared: 4 becomes owner (editors before viewers), 3 removed with 4 as successor; alone: deleted;
    // coOwned: 3 removed, 4 (already an owner) is the successor.
    const events = (await next(before + 4)).slice(before)
    // The stream keeps commit order per project (the aggregate), not across projects: the relay publishes
    // different projects' events concurrently. A stable sort by project keeps each project's own order.
    const projectOf = (event: EventEnvelope) => (event.data as { project_id: number }).project_id
    const perProject = [...events].sort((a, b) => projectOf(a) - projectOf(b))
    expect(perProject.map(summary)).toEqual([
      `projects.member.role_changed {"project_id":${shared},"user_id":4,"role":"owner","previous_role":"editor"}`,
      `projects.member.removed {"project_id":${shared},"user_id":3,"reason":"user_deleted","successor_id":4}`,
      `projects.project.deleted {"project_id":${alone},"reason":"last_member_deleted"}`,
      `projects.member.removed {"project_id":${coOwned},"user_id":3,"reason":"user_deleted","successor_id":4}`,
    ])
    expect(events.every((event) => event.traceparent === TRACEPARENT)).toBe(true)
    expect((await app.inject({ url: `/projects/${alone}` })).statusCode).toBe(404)
    const members = (await app.inject({ url: `/projects/${shared}/members` })).json()
    expect(members.map((m: { user_id: number; role: string }) => `${m.user_id}:${m.role}`)).toEqual([
      '4:owner',
      '5:viewer',
    ])
    const metrics = await app.inject({ url: '/metrics' })
    expect(metrics.body).toMatch(/events_relay_leader\{[^}]*\} 1/)
    expect(metrics.body).toMatch(/events_outbox_pending\{[^}]*\} 0/)
  })
})
