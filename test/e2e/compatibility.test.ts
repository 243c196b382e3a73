import { request as httpRequest } from 'node:http'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { allHealthy, gatewayRoot, originalTask as original } from '../lib/contract.ts'
import { startSystem, type TestSystem } from './helpers.ts'

// `pnpm start --auth disabled`: a client of the original sample, unchanged, against the gateway.

let system: TestSystem

beforeAll(async () => {
  system = await startSystem({ auth: 'disabled' })
})

afterAll(async () => {
  await system?.destroy()
})

function expectProblem(answer: { status: number; headers: Headers; body: any }, status: number) {
  expect(answer.status).toBe(status)
  expect(answer.headers.get('content-type')).toContain('application/problem+json')
  expect(answer.body).toMatchObject({ status, title: expect.any(String), detail: expect.any(String) })
}

describe('the original contract with AUTH_MODE=disabled', () => {
  test('gateway GET / and GET /health keep their shapes', async () => {
    const root = await system.api('GET', '/')
    expect(root.status).toBe(200)
    expect(root.body).toMatchObject(gatewayRoot)
    const health = await system.api('GET', '/health')
    expect(health.status).toBe(200)
    expect(health.body).toEqual(allHealthy)
  })

  test('every task endpoint with its status codes and body shapes', async () => {
    const { api } = system
    const created = await api('POST', '/tasks', { body: original })
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({ ...original, id: expect.any(Number), due_date: expect.any(String) })
    expect(Date.parse(created.body.due_date)).toBe(Date.parse(original.due_date))
    expect(Date.parse(created.body.created_at)).not.toBeNaN()
    expect(Date.parse(created.body.updated_at)).not.toBeNaN()
    const id = created.body.id as number

    const minimal = await api('POST', '/tasks', { body: { title: 'Defaults', user_id: 8, project_id: 3 } })
    expect(minimal.status).toBe(201)
    expect(minimal.body).toMatchObject({
      status: 'todo',
      priority: 'medium',
      description: '',
      tags: [],
      due_date: null,
    })

    const list = await api('GET', '/tasks')
    expect(list.status).toBe(200)
    expect(Array.isArray(list.body)).toBe(true)
    expect(list.body.map((task: { id: number }) => task.id)).toEqual(
      expect.arrayContaining([id, minimal.body.id]),
    )
    const filtered = await api('GET', '/tasks?user_id=7')
    expect(filtered.body.map((task: { id: number }) => task.id)).toEqual([id])

    const one = await api('GET', `/tasks/${id}`)
    expect(one.status).toBe(200)
    expect(one.body).toEqual(created.body)

    const replaced = await api('PUT', `/tasks/${id}`, {
      body: { ...original, title: 'Replaced', tags: ['x'], description: '' },
    })
    expect(replaced.status).toBe(200)
    expect(replaced.body).toMatchObject({ id, title: 'Replaced', tags: ['x'], description: '' })

    const status = await api('PATCH', `/tasks/${id}/status`, { body: { status: 'done' } })
    expect(status.status).toBe(200)
    expect(status.body).toMatchObject({ id, status: 'done', title: 'Replaced' })

    const deleted = await api('DELETE', `/tasks/${id}`)
    expect(deleted.status).toBe(204)
    expect(deleted.body).toBe('')
    const gone = await api('GET', `/tasks/${id}`)
    expectProblem(gone, 404)
    expect(gone.body.detail).toBe(`Task ${id} not found`)
    expect((await api('PUT', `/tasks/${id}`, { body: original })).body.detail).toBe(`Task ${id} not found`)
    expect((await api('PATCH', `/tasks/${id}/status`, { body: { status: 'todo' } })).status).toBe(404)
    expect((await api('DELETE', `/tasks/${id}`)).status).toBe(404)
  })

  test('HTML is stripped; a title empty after stripping is refused', async () => {
    const stripped = await system.api('POST', '/tasks', {
      body: { ...original, title: '<b>Bold</b> move<script>alert(1)</script>', tags: ['<i>x</i>'] },
    })
    expect(stripped.status).toBe(201)
    expect(stripped.body.title).toBe('Bold move')
    expect(stripped.body.tags).toEqual(['x'])
    expectProblem(await system.api('POST', '/tasks', { body: { ...original, title: '<b></b>' } }), 422)
  })

  test('schema violations are 422 problem+json and write nothing', async () => {
    const before = (await system.api('GET', '/tasks?limit=200')).body.length
    const invalid: Array<[string, unknown]> = [
      ['missing title', { ...original, title: undefined }],
      ['title too long', { ...original, title: 'x'.repeat(201) }],
      ['description too long', { ...original, description: 'x'.repeat(2001) }],
      ['unknown status', { ...original, status: 'blocked' }],
      ['unknown priority', { ...original, priority: 'urgent' }],
      ['user_id 0', { ...original, user_id: 0 }],
      ['project_id negative', { ...original, project_id: -1 }],
      ['tag too long', { ...original, tags: ['x'.repeat(51)] }],
      ['due_date not a date', { ...original, due_date: 'tomorrow' }],
    ]
    for (const [, body] of invalid) {
      expectProblem(await system.api('POST', '/tasks', { body }), 422)
    }
    const existing = (await system.api('POST', '/tasks', { body: original })).body.id
    expectProblem(
      await system.api('PUT', `/tasks/${existing}`, { body: { ...original, status: 'nope' } }),
      422,
    )
    expectProblem(await system.api('PATCH', `/tasks/${existing}/status`, { body: { status: 'nope' } }), 422)
    expectProblem(await system.api('GET', '/tasks/not-a-number'), 422)
    expect((await system.api('GET', '/tasks?limit=200')).body.length).toBe(before + 1)
  })

  test('an unknown route is 404', async () => {
    expect((await system.api('GET', '/no-such-thing')).status).toBe(404)
  })
})

/** POST /tasks from another local address (127.0.0.2): another client, as the gateway sees its TCP peer. */
function createFrom(localAddress: string, url: string, body: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body)
    const req = httpRequest(
      `${url}/tasks`,
      {
        method: 'POST',
        localAddress,
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      },
    )
    req.on('error', reject)
    req.end(payload)
  })
}

describe('per-client rate limits without tokens', () => {
  test('a client rotating X-Forwarded-For stays in one bucket: its creates end in 429 whatever it claims; another address is not limited', async () => {
    const statuses: number[] = []
    // Bounded: at most 21 creates (the budget is 20 a minute, some already spent by the tests above), each
    // claiming to come from somewhere else, until the first 429; then a few more new claims, all refused.
    for (let i = 0; i < 21 && !statuses.includes(429); i++) {
      const response = await system.api('POST', '/tasks', {
        headers: { 'x-forwarded-for': `203.0.113.${i + 1}` },
        body: { ...original, title: `Burst ${i}` },
      })
      statuses.push(response.status)
    }
    expect(statuses.at(-1)).toBe(429)
    expect(statuses.slice(0, -1).every((status) => status === 201)).toBe(true)
    for (let i = 100; i < 103; i++) {
      const again = await system.api('POST', '/tasks', {
        headers: { 'x-forwarded-for': `198.51.100.${i}` },
        body: original,
      })
      expect(again.status).toBe(429)
    }
    expect(await createFrom('127.0.0.2', system.gatewayUrl, original)).toBe(201)
  })
})
