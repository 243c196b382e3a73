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

async function create(body: Record<string, unknown>) {
  return app.inject({ method: 'POST', url: '/tasks', payload: body })
}

const countTasks = () => countRows(database.url, 'tasks')

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

describe('the original contract', () => {
  test('POST /tasks creates a task: 201 with every field, timestamps in UTC with Z', async () => {
    const response = await create(validTask)
    expect(response.statusCode).toBe(201)
    const task = response.json()
    expect(task).toMatchObject({ ...validTask, due_date: '2026-12-01T17:00:00.000Z' })
    expect(Number.isInteger(task.id)).toBe(true)
    expect(task.created_at).toMatch(ISO_UTC)
    expect(task.updated_at).toMatch(ISO_UTC)
    expect(response.headers.location).toBe(`/tasks/${task.id}`)
    expect(response.headers.etag).toBe(`"${task.id}.1"`)
  })

  test('defaults: status todo, priority medium, empty description and tags, no due date', async () => {
    const response = await create({ title: 'Minimal', user_id: 2, project_id: 3 })
    expect(response.statusCode).toBe(201)
    expect(response.json()).toMatchObject({
      title: 'Minimal',
      description: '',
      status: 'todo',
      priority: 'medium',
      due_date: null,
      tags: [],
      user_id: 2,
      project_id: 3,
    })
  })

  test('GET /tasks answers a JSON array and filters by user_id', async () => {
    await create({ ...validTask, user_id: 77, title: 'For 77' })
    const all = await app.inject({ url: '/tasks' })
    expect(all.statusCode).toBe(200)
    expect(Array.isArray(all.json())).toBe(true)
    const mine = await app.inject({ url: '/tasks?user_id=77' })
    expect(mine.json().map((t: { title: string }) => t.title)).toEqual(['For 77'])
  })

  test('GET /tasks/{id}: 200 with the task, 404 with the original detail', async () => {
    const created = (await create(validTask)).json()
    const found = await app.inject({ url: `/tasks/${created.id}` })
    expect(found.statusCode).toBe(200)
    expect(found.json()).toEqual(created)
    const missing = await app.inject({ url: '/tasks/424242' })
    expect(missing.statusCode).toBe(404)
    expect(missing.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(missing.json()).toMatchObject({ status: 404, title: 'Not Found', detail: 'Task 424242 not found' })
  })

  test('PUT /tasks/{id} replaces the whole task; omitted optional fields reset to defaults', async () => {
    const created = (await create(validTask)).json()
    const response = await app.inject({
      method: 'PUT',
      url: `/tasks/${created.id}`,
      payload: { title: 'Replaced', user_id: 5, project_id: 6 },
    })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({
      id: created.id,
      title: 'Replaced',
      description: '',
      status: 'todo',
      priority: 'medium',
      tags: [],
      due_date: null,
      user_id: 5,
      project_id: 6,
      version: 2,
      created_at: created.created_at,
    })
    expect(response.json().updated_at >= created.updated_at).toBe(true)
  })

  test('PATCH /tasks/{id}/status changes only the status', async () => {
    const created = (await create(validTask)).json()
    const response = await app.inject({
      method: 'PATCH',
      url: `/tasks/${created.id}/status`,
      payload: { status: 'in_progress' },
    })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({
      ...created,
      status: 'in_progress',
      version: 2,
      updated_at: expect.any(String),
    })
  })

  test('DELETE /tasks/{id}: 204 with no body, then 404', async () => {
    const created = (await create(validTask)).json()
    const deleted = await app.inject({ method: 'DELETE', url: `/tasks/${created.id}` })
    expect(deleted.statusCode).toBe(204)
    expect(deleted.body).toBe('')
    expect((await app.inject({ url: `/tasks/${created.id}` })).statusCode).toBe(404)
    expect((await app.inject({ method: 'DELETE', url: `/tasks/${created.id}` })).statusCode).toBe(404)
  })
})

describe('schema violations answer 422 and write nothing', () => {
  const longTag = 'x'.repeat(51)
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['missing title', { user_id: 1, project_id: 1 }, 'title'],
    ['empty title', { ...validTask, title: '' }, 'title'],
    ['title over 200 chars', { ...validTask, title: 'a'.repeat(201) }, 'title'],
    ['description over 2000 chars', { ...validTask, description: 'd'.repeat(2001) }, 'description'],
    ['unknown status', { ...validTask, status: 'blocked' }, 'status'],
    ['unknown priority', { ...validTask, priority: 'urgent' }, 'priority'],
    ['user_id zero', { ...validTask, user_id: 0 }, 'user_id'],
    ['project_id negative', { ...validTask, project_id: -4 }, 'project_id'],
    ['missing user_id', { title: 't', project_id: 1 }, 'user_id'],
    ['tag over 50 chars', { ...validTask, tags: ['ok', longTag] }, 'tags.1'],
    ['more than 20 tags', { ...validTask, tags: Array.from({ length: 21 }, (_, i) => `t${i}`) }, 'tags'],
    ['due_date not a date', { ...validTask, due_date: 'next tuesday' }, 'due_date'],
    ['due_date impossible', { ...validTask, due_date: '2026-13-45' }, 'due_date'],
    ['title only HTML', { ...validTask, title: '<b></b><script>x</script>' }, 'title'],
  ]
  test.each(cases)('%s', async (_name, body, field) => {
    const before = await countTasks()
    const response = await create(body)
    expect(response.statusCode).toBe(422)
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
    const problem = response.json()
    expect(problem).toMatchObject({ status: 422, type: 'urn:task-manager:problem:validation-failed' })
    expect(problem.detail).toEqual(expect.any(String))
    expect(problem.errors.map((e: { field: string }) => e.field)).toContain(field)
    expect(await countTasks()).toBe(before)
  })

  test('PUT with an invalid body leaves the task unchanged', async () => {
    const created = (await create(validTask)).json()
    const response = await app.inject({ method: 'PUT', url: `/tasks/${created.id}`, payload: { title: '' } })
    expect(response.statusCode).toBe(422)
    expect((await app.inject({ url: `/tasks/${created.id}` })).json()).toEqual(created)
  })

  test('a non-numeric id is a 422, not a 500', async () => {
    const response = await app.inject({ url: '/tasks/abc' })
    expect(response.statusCode).toBe(422)
    expect(response.json().errors[0]).toMatchObject({ in: 'params', field: 'id' })
  })
})

describe('HTML is stripped', () => {
  test('from title, description and tags; plain text with < and & survives', async () => {
    const response = await create({
      ...validTask,
      title: '<b>Bold</b> move <script>alert(1)</script>',
      description: 'a < b & c <img src=x onerror=alert(1)>done &lt;i&gt;x&lt;/i&gt;',
      tags: ['<em>urgent</em>', '<br>', 'plain'],
    })
    expect(response.statusCode).toBe(201)
    const task = response.json()
    expect(task.title).toBe('Bold move')
    expect(task.description).toBe('a < b & c done x')
    expect(task.tags).toEqual(['urgent', 'plain'])
  })
})

describe('mass assignment', () => {
  test('id, version and timestamps sent by a client are ignored', async () => {
    const response = await create({
      ...validTask,
      id: 999_999,
      version: 42,
      created_at: '2000-01-01T00:00:00Z',
      updated_at: '2000-01-01T00:00:00Z',
    })
    expect(response.statusCode).toBe(201)
    const task = response.json()
    expect(task.id).not.toBe(999_999)
    expect(task.version).toBe(1)
    expect(task.created_at.startsWith('2000')).toBe(false)
  })
})

describe('JSON merge patch', () => {
  test('PATCH /tasks/{id} changes present fields, null clears due_date and tags', async () => {
    const created = (await create(validTask)).json()
    const response = await app.inject({
      method: 'PATCH',
      url: `/tasks/${created.id}`,
      headers: { 'content-type': 'application/merge-patch+json' },
      payload: JSON.stringify({ priority: 'low', due_date: null, tags: null, description: '<i>new</i>' }),
    })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({
      title: validTask.title,
      priority: 'low',
      due_date: null,
      tags: [],
      description: 'new',
      status: 'todo',
      version: 2,
    })
  })

  test('an empty patch or a null title is rejected', async () => {
    const created = (await create(validTask)).json()
    const empty = await app.inject({ method: 'PATCH', url: `/tasks/${created.id}`, payload: {} })
    expect(empty.statusCode).toBe(422)
    const nullTitle = await app.inject({
      method: 'PATCH',
      url: `/tasks/${created.id}`,
      payload: { title: null },
    })
    expect(nullTitle.statusCode).toBe(422)
  })
})

describe('OpenAPI', () => {
  test('/openapi.json documents every task route from the route schemas', async () => {
    const response = await app.inject({ url: '/openapi.json' })
    expect(response.statusCode).toBe(200)
    const doc = response.json()
    expect(doc.openapi).toBe('3.1.0')
    expect(Object.keys(doc.paths).sort()).toEqual(['/tasks', '/tasks/{id}', '/tasks/{id}/status'])
    expect(Object.keys(doc.paths['/tasks/{id}']).sort()).toEqual(['delete', 'get', 'patch', 'put'])
    expect(doc.paths['/tasks'].post.responses['201']).toBeDefined()
    expect(doc.paths['/tasks'].get.parameters.map((p: { name: string }) => p.name)).toContain('cursor')
  })

  test('the document tells the truth: problem+json errors, every status, extras ignored, the token', async () => {
    const doc = (await app.inject({ url: '/openapi.json' })).json()
    const get = doc.paths['/tasks/{id}'].get
    // What the handler decides, what the kit decides from the route (a path parameter, validation, a rate
    // limit, the auth hook) and what any request can meet.
    for (const status of ['200', '400', '401', '404', '408', '414', '422', '429', '431', '500', '503']) {
      expect(get.responses, status).toHaveProperty(status)
    }
    expect(get.responses['404'].content).toEqual({
      'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } },
    })
    expect(Object.keys(get.responses['200'].content)).toEqual(['application/json'])
    expect(doc.components.schemas.Problem.required).toEqual(['type', 'title', 'status', 'detail'])
    // These tests run with AUTH_MODE=disabled: a token is optional (with authentication: [{ bearerAuth: [] }]).
    expect(get.security).toEqual([{}, { bearerAuth: [] }])
    expect(doc.components.securitySchemes.bearerAuth.scheme).toBe('bearer')
    // A body is read: its own statuses; unknown properties are removed, so the document does not refuse them.
    const post = doc.paths['/tasks'].post
    for (const status of ['413', '415']) expect(post.responses, status).toHaveProperty(status)
    const body = post.requestBody.content['application/json'].schema
    expect(body.additionalProperties).toBeUndefined()
    expect(body.properties.title.pattern).toBe('^[^\\u0000]*$')
    expect(body.properties.title['x-well-formed']).toBe(true)
    // A 204 has no body; `limit` has a default, so it is not required.
    expect(doc.paths['/tasks/{id}'].delete.responses['204'].content).toBeUndefined()
    const limit = doc.paths['/tasks'].get.parameters.find((p: { name: string }) => p.name === 'limit')
    expect(limit.required).toBe(false)
    expect(doc.info.description).toContain('405')
  })
})
