import type { App } from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { buildApp, countRows, validTask } from './helpers.js'

const database = useTestDatabase()
let app: App

beforeAll(async () => {
  app = await buildApp(database.url)
})
afterAll(async () => {
  await app?.close()
})

async function createTask() {
  const response = await app.inject({ method: 'POST', url: '/tasks', payload: validTask })
  return { task: response.json(), etag: response.headers.etag as string }
}

describe('optimistic concurrency', () => {
  test('GET returns an ETag that changes with every write', async () => {
    const { task, etag } = await createTask()
    const got = await app.inject({ url: `/tasks/${task.id}` })
    expect(got.headers.etag).toBe(etag)
    const patched = await app.inject({
      method: 'PATCH',
      url: `/tasks/${task.id}/status`,
      payload: { status: 'done' },
    })
    expect(patched.headers.etag).not.toBe(etag)
    expect(patched.headers.etag).toBe(`"${task.id}.2"`)
  })

  test.each([
    ['PUT', '', { ...validTask, title: 'changed' }],
    ['PATCH', '', { title: 'changed' }],
    ['PATCH', '/status', { status: 'done' }],
    ['DELETE', '', undefined],
  ] as const)(
    '%s%s with a stale If-Match answers 412 and changes nothing',
    async (method, suffix, payload) => {
      const { task, etag } = await createTask()
      await app.inject({ method: 'PATCH', url: `/tasks/${task.id}`, payload: { priority: 'low' } })
      const response = await app.inject({
        method,
        url: `/tasks/${task.id}${suffix}`,
        headers: { 'if-match': etag },
        ...(payload ? { payload } : {}),
      })
      expect(response.statusCode).toBe(412)
      expect(response.json()).toMatchObject({
        status: 412,
        type: 'urn:task-manager:problem:precondition-failed',
      })
      const current = (await app.inject({ url: `/tasks/${task.id}` })).json()
      expect(current).toMatchObject({ title: validTask.title, priority: 'low', version: 2 })
    },
  )

  test('a matching If-Match (or *) lets the write through', async () => {
    const { task, etag } = await createTask()
    const ok = await app.inject({
      method: 'PATCH',
      url: `/tasks/${task.id}`,
      headers: { 'if-match': etag },
      payload: { title: 'v2' },
    })
    expect(ok.statusCode).toBe(200)
    const star = await app.inject({
      method: 'PATCH',
      url: `/tasks/${task.id}`,
      headers: { 'if-match': '*' },
      payload: { title: 'v3' },
    })
    expect(star.statusCode).toBe(200)
    const deleted = await app.inject({
      method: 'DELETE',
      url: `/tasks/${task.id}`,
      headers: { 'if-match': star.headers.etag as string },
    })
    expect(deleted.statusCode).toBe(204)
  })

  test('an If-Match naming another task can never match: 412', async () => {
    const a = await createTask()
    const b = await createTask()
    const response = await app.inject({
      method: 'PATCH',
      url: `/tasks/${a.task.id}`,
      headers: { 'if-match': b.etag },
      payload: { title: 'x' },
    })
    expect(response.statusCode).toBe(412)
  })

  test('of concurrent updates holding the same ETag exactly one wins', async () => {
    const { task, etag } = await createTask()
    const attempts = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        app.inject({
          method: 'PATCH',
          url: `/tasks/${task.id}`,
          headers: { 'if-match': etag },
          payload: { title: `writer ${i}` },
        }),
      ),
    )
    const codes = attempts.map((response) => response.statusCode).sort()
    expect(codes.filter((code) => code === 200)).toHaveLength(1)
    expect(codes.filter((code) => code === 412)).toHaveLength(7)
    const winner = attempts.find((response) => response.statusCode === 200)?.json()
    expect((await app.inject({ url: `/tasks/${task.id}` })).json()).toMatchObject({
      title: winner.title,
      version: 2,
    })
  })
})

describe('Idempotency-Key on POST /tasks', () => {
  test('a retry with the same key and body returns the first response and creates nothing', async () => {
    const before = await countRows(database.url, 'tasks')
    const headers = { 'idempotency-key': 'retry-1' }
    const first = await app.inject({ method: 'POST', url: '/tasks', headers, payload: validTask })
    const second = await app.inject({ method: 'POST', url: '/tasks', headers, payload: validTask })
    expect(first.statusCode).toBe(201)
    expect(second.statusCode).toBe(201)
    expect(second.json()).toEqual(first.json())
    expect(second.headers['idempotent-replayed']).toBe('true')
    expect(await countRows(database.url, 'tasks')).toBe(before + 1)
  })

  test('the same key with a different body is a 422 and creates nothing', async () => {
    const headers = { 'idempotency-key': 'reused-key' }
    await app.inject({ method: 'POST', url: '/tasks', headers, payload: validTask })
    const before = await countRows(database.url, 'tasks')
    const response = await app.inject({
      method: 'POST',
      url: '/tasks',
      headers,
      payload: { ...validTask, title: 'other' },
    })
    expect(response.statusCode).toBe(422)
    expect(response.json().type).toBe('urn:task-manager:problem:idempotency-key-reused')
    expect(await countRows(database.url, 'tasks')).toBe(before)
  })

  test('concurrent requests with one key create exactly one task', async () => {
    const before = await countRows(database.url, 'tasks')
    const responses = await Promise.all(
      Array.from({ length: 6 }, () =>
        app.inject({
          method: 'POST',
          url: '/tasks',
          headers: { 'idempotency-key': 'race' },
          payload: validTask,
        }),
      ),
    )
    expect(responses.map((response) => response.statusCode)).toEqual(Array(6).fill(201))
    expect(new Set(responses.map((response) => response.json().id)).size).toBe(1)
    expect(await countRows(database.url, 'tasks')).toBe(before + 1)
  })

  test('a rejected request does not burn its key', async () => {
    const headers = { 'idempotency-key': 'after-422' }
    const bad = await app.inject({
      method: 'POST',
      url: '/tasks',
      headers,
      payload: { ...validTask, title: '<p></p>' },
    })
    expect(bad.statusCode).toBe(422)
    const good = await app.inject({ method: 'POST', url: '/tasks', headers, payload: validTask })
    expect(good.statusCode).toBe(201)
  })

  test('an expired key is free again', async () => {
    const headers = { 'idempotency-key': 'expiring' }
    const first = await app.inject({ method: 'POST', url: '/tasks', headers, payload: validTask })
    const client = new (await import('pg')).default.Client({ connectionString: database.url })
    await client.connect()
    await client.query(
      "update idempotency_keys set expires_at = now() - interval '1 second' where key = 'expiring'",
    )
    await client.end()
    const second = await app.inject({ method: 'POST', url: '/tasks', headers, payload: validTask })
    expect(second.statusCode).toBe(201)
    expect(second.json().id).not.toBe(first.json().id)
  })
})
