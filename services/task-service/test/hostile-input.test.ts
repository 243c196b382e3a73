import type { App } from '@task-manager/service-kit'
import {
  type Call,
  expectFieldRefused,
  jsonCaller,
  listenOnLoopback,
  useTestDatabase,
} from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { buildApp, countRows, validTask } from './helpers.js'

// Input a hostile client sends, through real HTTP against real PostgreSQL: every case answers a 4xx
// problem+json naming the field, and a refused request writes nothing.

const database = useTestDatabase('hostile_tasks')
let app: App
let base: string
let taskId: number

let call: Call
const expectRefused = expectFieldRefused

async function snapshot() {
  const task = await call('GET', `/tasks/${taskId}`)
  return {
    rows: await countRows(database.url, 'tasks'),
    keys: await countRows(database.url, 'idempotency_keys'),
    task: task.body,
  }
}

beforeAll(async () => {
  app = await buildApp(database.url)
  base = await listenOnLoopback(app)
  call = jsonCaller(base)
  taskId = (await call('POST', '/tasks', validTask)).body.id
})
afterAll(async () => app?.close())

describe('text the database cannot store', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['title', { title: 'before\u0000after' }, 'title'],
    ['description', { description: 'a\u0000' }, 'description'],
    ['a tag', { tags: ['ok', 'n\u0000'] }, 'tags.1'],
    ['an unpaired surrogate', { title: 'broken \ud800 text' }, 'title'],
  ]
  for (const [what, change, field] of cases) {
    test(`NUL or unpaired surrogate in ${what}: 422 on create, replace and patch; nothing written`, async () => {
      const before = await snapshot()
      expectRefused(await call('POST', '/tasks', { ...validTask, ...change }), 'body', field)
      expectRefused(
        await call('POST', '/tasks', { ...validTask, ...change }, { 'idempotency-key': `k-${field}` }),
        'body',
        field,
      )
      expectRefused(await call('PUT', `/tasks/${taskId}`, { ...validTask, ...change }), 'body', field)
      expectRefused(await call('PATCH', `/tasks/${taskId}`, change), 'body', field)
      expect(await snapshot()).toEqual(before)
    })
  }

  test('NUL in the q and tag filters: 422 naming the parameter', async () => {
    expectRefused(await call('GET', '/tasks?q=a%00b'), 'querystring', 'q')
    expectRefused(await call('GET', '/tasks?tag=%00'), 'querystring', 'tag')
  })

  test('text that is fine is stored as sent (emoji, accents, control characters other than NUL)', async () => {
    const title = 'Café ☕ 🚀 tab\there'
    const created = await call('POST', '/tasks', { ...validTask, title, tags: ['😀'] })
    expect(created.status).toBe(201)
    expect(created.body.title).toBe(title)
    expect(created.body.tags).toEqual(['😀'])
  })
})

describe('ids in the path', () => {
  for (const id of [
    'Infinity',
    '-Infinity',
    'NaN',
    '1e3',
    '1.0',
    '0x10',
    '99999999999999999999',
    '0',
    '-1',
    '%20',
    '9'.repeat(60),
  ]) {
    test(`/tasks/${id.slice(0, 24)}: 422 naming 'id' for every method; nothing written`, async () => {
      const before = await snapshot()
      expectRefused(await call('GET', `/tasks/${id}`), 'params', 'id')
      expectRefused(await call('PUT', `/tasks/${id}`, validTask), 'params', 'id')
      expectRefused(await call('PATCH', `/tasks/${id}`, { title: 'x' }), 'params', 'id')
      expectRefused(await call('PATCH', `/tasks/${id}/status`, { status: 'done' }), 'params', 'id')
      expectRefused(await call('DELETE', `/tasks/${id}`), 'params', 'id')
      expect(await snapshot()).toEqual(before)
    })
  }

  test('a path parameter longer than the router takes: 414 problem+json', async () => {
    const answer = await call('GET', `/tasks/${'9'.repeat(400)}`)
    expect(answer.status).toBe(414)
    expect(answer.type).toMatch(/^application\/problem\+json/)
    expect(answer.body.detail).toContain('path parameter')
  })

  test('ids in the body and the query string out of the integer column range: 422', async () => {
    expectRefused(await call('POST', '/tasks', { ...validTask, project_id: 2 ** 31 }), 'body', 'project_id')
    expectRefused(await call('POST', '/tasks', { ...validTask, user_id: 1.5 }), 'body', 'user_id')
    expectRefused(await call('GET', '/tasks?user_id=Infinity'), 'querystring', 'user_id')
    expectRefused(await call('GET', '/tasks?project_id=1e3'), 'querystring', 'project_id')
    expectRefused(await call('GET', '/tasks?user_id=99999999999999999999'), 'querystring', 'user_id')
  })
})

describe('calendar dates', () => {
  for (const due of [
    '2026-02-30',
    '2027-02-29',
    '2026-04-31',
    '2026-13-01',
    '2026-12-01T24:00:00Z',
    '2026-12-01T17:60Z',
    '2026-12-01T17:00:00+05',
    '2026-12-01T17:00:00+25:00',
  ]) {
    test(`due_date ${due}: 422 naming due_date, never rolled over; nothing written`, async () => {
      const before = await snapshot()
      expectRefused(await call('POST', '/tasks', { ...validTask, due_date: due }), 'body', 'due_date')
      expectRefused(await call('PATCH', `/tasks/${taskId}`, { due_date: due }), 'body', 'due_date')
      expect(await snapshot()).toEqual(before)
    })
  }

  test('existing dates are stored as given: leap days, offsets, dates alone', async () => {
    const cases: [string, string][] = [
      ['2028-02-29', '2028-02-29T00:00:00.000Z'],
      ['2000-02-29T12:00:00Z', '2000-02-29T12:00:00.000Z'],
      ['2026-12-01T17:00:00+05:30', '2026-12-01T11:30:00.000Z'],
      ['2026-12-01T17:00:00-0100', '2026-12-01T18:00:00.000Z'],
      ['2026-12-01 17:00', '2026-12-01T17:00:00.000Z'],
    ]
    for (const [due, stored] of cases) {
      const created = await call('POST', '/tasks', { ...validTask, due_date: due })
      expect(created.status, due).toBe(201)
      expect(created.body.due_date).toBe(stored)
    }
  })

  test('due_before / due_after with an impossible date: 422', async () => {
    expectRefused(await call('GET', '/tasks?due_before=2026-02-30T00:00:00Z'), 'querystring', 'due_before')
    expectRefused(await call('GET', '/tasks?due_after=2026-02-30T00:00:00Z'), 'querystring', 'due_after')
    // A 60th second (leap-second syntax) was taken by the format check and reached the database as an
    // invalid date: a 500.
    expectRefused(await call('GET', '/tasks?due_before=9999-12-31T23:59:60Z'), 'querystring', 'due_before')
  })

  test('due_before / due_after take what due_date takes (a date alone, no offset)', async () => {
    expect((await call('GET', '/tasks?due_before=2026-12-02')).status).toBe(200)
    expect((await call('GET', '/tasks?due_after=2026-12-01T12:00')).status).toBe(200)
  })
})

describe('JSON bodies are taken as typed', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['a number as the title', { title: 5 }, 'title'],
    ['null as a tag', { tags: [null] }, 'tags.0'],
    ['a string as project_id', { project_id: String(validTask.project_id) }, 'project_id'],
  ]
  for (const [what, change, field] of cases) {
    test(`${what}: 422 naming the field (never coerced); nothing written`, async () => {
      const before = await snapshot()
      expectRefused(await call('POST', '/tasks', { ...validTask, ...change }), 'body', field)
      expectRefused(await call('PATCH', `/tasks/${taskId}`, change), 'body', field)
      expect(await snapshot()).toEqual(before)
    })
  }

  test('a __proto__ key is removed like any unknown property', async () => {
    const response = await fetch(`${base}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: `{"title":"Proto","project_id":${validTask.project_id},"user_id":${validTask.user_id},"__proto__":{"admin":true}}`,
    })
    expect(response.status).toBe(201)
    expect(await response.json()).not.toHaveProperty('admin')
  })
})

describe('list cursors', () => {
  const forge = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
  const forged: [string, string][] = [
    ['a timestamp that is no date', forge(['created_at', 'garbage', 1])],
    ['an impossible date', forge(['created_at', '2026-02-30T00:00:00Z', 1])],
    ['an id past the integer column', forge(['created_at', '2026-12-01T00:00:00Z', 1e20])],
    ['a fractional id', forge(['created_at', '2026-12-01T00:00:00Z', 1.5])],
    ['a priority rank out of range', forge(['priority', 99, 1])],
    ['a string priority', forge(['priority', 'high', 1])],
    ['an unknown sort', forge(['title', 'x', 1])],
    ['another shape', forge({ after: 1 })],
    ['not JSON', Buffer.from('not json').toString('base64url')],
    ['not base64url', 'a+b/c=='],
  ]
  for (const [what, cursor] of forged) {
    test(`a cursor with ${what}: 422 naming 'cursor'`, async () => {
      const sort = what.includes('priority') ? '&sort=priority' : ''
      expectRefused(
        await call('GET', `/tasks?cursor=${encodeURIComponent(cursor)}${sort}`),
        'querystring',
        'cursor',
      )
    })
  }

  test('a cursor of another sort: 422 saying so', async () => {
    const answer = await call('GET', `/tasks?sort=-priority&cursor=${forge(['priority', 2, 1])}`)
    expectRefused(answer, 'querystring', 'cursor')
    expect(answer.body.detail).toContain("sort 'priority'")
  })

  test('issued cursors still page through every sort', async () => {
    for (let i = 0; i < 3; i++)
      await call('POST', '/tasks', { ...validTask, due_date: i === 0 ? null : validTask.due_date })
    for (const sort of ['created_at', '-updated_at', 'due_date', '-due_date', 'priority', '-priority']) {
      const seen = new Set<number>()
      let url: string | null = `/tasks?limit=1&sort=${sort}`
      while (url) {
        const response = await fetch(`${base}${url}`)
        expect(response.status, `${sort} ${url}`).toBe(200)
        for (const task of (await response.json()) as { id: number }[]) seen.add(task.id)
        url = /<([^>]+)>; rel="next"/.exec(response.headers.get('link') ?? '')?.[1] ?? null
      }
      expect(seen.size).toBe(await countRows(database.url, 'tasks'))
    }
  })
})

describe('entity tags', () => {
  for (const ifMatch of [
    `"${1}.99999999999999999999"`,
    '"99999999999999999999.1"',
    '"1.-1"',
    '"1.1e3"',
    'W/"1.1"',
  ]) {
    test(`If-Match ${ifMatch}: 412 (it can never match), the task unchanged`, async () => {
      const before = await snapshot()
      const tag = ifMatch.replace('"1.', `"${taskId}.`)
      for (const [method, path, body] of [
        ['PUT', `/tasks/${taskId}`, validTask],
        ['PATCH', `/tasks/${taskId}`, { title: 'changed' }],
        ['PATCH', `/tasks/${taskId}/status`, { status: 'done' }],
        ['DELETE', `/tasks/${taskId}`, undefined],
      ] as const) {
        const answer = await call(method, path, body, { 'if-match': tag })
        expect(answer.status, `${method} ${path}`).toBe(412)
        expect(answer.type).toMatch(/^application\/problem\+json/)
      }
      expect(await snapshot()).toEqual(before)
    })
  }

  test('an oversized If-Match: 422 naming the header', async () => {
    expectRefused(
      await call('DELETE', `/tasks/${taskId}`, undefined, { 'if-match': `"${'1'.repeat(300)}"` }),
      'headers',
      'if-match',
    )
  })
})

describe('idempotency and no-op writes', () => {
  test('an Idempotency-Key replay whose body has its keys in another order replays the first response', async () => {
    const key = 'reordered-body'
    const first = await call('POST', '/tasks', validTask, { 'idempotency-key': key })
    expect(first.status).toBe(201)
    const reordered = Object.fromEntries(Object.entries(validTask).reverse())
    const before = await countRows(database.url, 'tasks')
    const replay = await call('POST', '/tasks', JSON.stringify(reordered), { 'idempotency-key': key })
    expect(replay.status).toBe(201)
    expect(replay.headers.get('idempotent-replayed')).toBe('true')
    expect(replay.body.id).toBe(first.body.id)
    expect(await countRows(database.url, 'tasks')).toBe(before)
    // A body that really differs is still a reused key.
    const other = await call('POST', '/tasks', { ...validTask, title: 'Another' }, { 'idempotency-key': key })
    expect(other.status).toBe(422)
    expect(await countRows(database.url, 'tasks')).toBe(before)
  })

  test('a PATCH of ignored fields only, or of the stored values, changes nothing: same version, same ETag', async () => {
    const created = (await call('POST', '/tasks', validTask)).body
    const etag = `"${created.id}.${created.version}"`
    for (const patch of [
      { id: 999, version: 42, created_at: '2020-01-01T00:00:00Z' },
      { title: created.title, tags: created.tags, due_date: created.due_date, priority: created.priority },
    ]) {
      const answer = await call('PATCH', `/tasks/${created.id}`, patch, { 'if-match': etag })
      expect(answer.status, JSON.stringify(answer.body)).toBe(200)
      expect(answer.body).toEqual(created)
      expect(answer.headers.get('etag')).toBe(etag)
    }
    const same = await call('PATCH', `/tasks/${created.id}/status`, { status: created.status })
    expect(same.body.version).toBe(created.version)
    expect((await call('GET', `/tasks/${created.id}`)).body).toEqual(created)
    // A no-op still honours If-Match: a stale tag is 412.
    const stale = await call(
      'PATCH',
      `/tasks/${created.id}`,
      { id: 1 },
      { 'if-match': `"${created.id}.${created.version + 1}"` },
    )
    expect(stale.status).toBe(412)
    // And a real change still bumps the version once.
    const changed = await call('PATCH', `/tasks/${created.id}`, { title: 'Changed' })
    expect(changed.body.version).toBe(created.version + 1)
  })
})
