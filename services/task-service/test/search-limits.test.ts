import type { App } from '@task-manager/service-kit'
import { jsonCaller, listenOnLoopback, useTestDatabase } from '@task-manager/testing'
import pg from 'pg'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { buildApp, validTask } from './helpers.js'

// Text search has a bounded cost: trigram indexes serve it, each list statement has its own timeout, and
// searches take a bounded share of the pool, so a burst of them cannot starve plain reads.

const database = useTestDatabase('search_limits')
let app: App
let call: ReturnType<typeof jsonCaller>

beforeAll(async () => {
  app = await buildApp(database.url, {
    SEARCH_CONCURRENCY: '1',
    SEARCH_QUEUE_MAX: '2',
    DATABASE_POOL_MAX: '4',
  })
  call = jsonCaller(await listenOnLoopback(app))
})
afterAll(async () => app?.close())

test('the trigram indexes exist and the planner uses them for a search', async () => {
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  try {
    const { rows } = await client.query(
      "select indexname from pg_indexes where tablename = 'tasks' and indexdef like '%gin_trgm_ops%' order by 1",
    )
    expect(rows.map((row) => row.indexname)).toEqual(['tasks_description_trgm_idx', 'tasks_title_trgm_idx'])
    await client.query('set enable_seqscan = off')
    const plan = await client.query(
      "explain select id from tasks where title ilike '%release%' or description ilike '%release%'",
    )
    expect(plan.rows.map((row) => row['QUERY PLAN']).join('\n')).toMatch(/trgm_idx/)
  } finally {
    await client.end()
  }
})

test('searches beyond the bulkhead get 503 + Retry-After at once; plain reads are still served; results stay right', async () => {
  await call('POST', '/tasks', { ...validTask, title: 'Needle in a haystack' })
  await call('POST', '/tasks', { ...validTask, title: 'Hay', description: 'more hay' })
  const found = await call('GET', '/tasks?q=needle')
  expect(found.status).toBe(200)
  expect(found.body.map((task: { title: string }) => task.title)).toEqual(['Needle in a haystack'])
  expect((await call('GET', '/tasks?q=%25')).body).toEqual([])

  // Enough that some arrive while the one running and the two waiting hold every turn, even on a loaded machine.
  const searches = Array.from({ length: 100 }, () => call('GET', '/tasks?q=hay'))
  const reads = Array.from({ length: 6 }, () => call('GET', '/tasks?user_id=1'))
  const [searched, read] = await Promise.all([Promise.all(searches), Promise.all(reads)])
  const statuses = searched.map((answer) => answer.status)
  expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(1)
  expect(statuses.filter((s) => s === 503).length).toBeGreaterThanOrEqual(1)
  expect(statuses.filter((s) => s !== 200 && s !== 503)).toEqual([])
  for (const refused of searched.filter((answer) => answer.status === 503)) {
    expect(refused.headers.get('retry-after')).toBe('1')
    expect(refused.body.detail).toMatch(/searches/)
  }
  expect(read.map((answer) => answer.status)).toEqual(Array(6).fill(200))
})

test('a list statement cannot run past LIST_STATEMENT_TIMEOUT_MS: held up, it answers 503 query-timeout', async () => {
  // Another session holds the table: the list's SELECT waits for the lock, inside its statement timeout (2 s).
  const blocker = new pg.Client({ connectionString: database.url })
  await blocker.connect()
  try {
    await blocker.query('begin')
    await blocker.query('lock table tasks in access exclusive mode')
    const started = Date.now()
    const held = await call('GET', '/tasks?status=todo')
    const elapsed = Date.now() - started
    expect(held.status).toBe(503)
    expect(held.body.type).toMatch(/query-timeout$/)
    expect(elapsed).toBeGreaterThanOrEqual(1900)
    expect(elapsed).toBeLessThan(6000)
    await blocker.query('rollback')
    // Its connection serves the next list.
    expect((await call('GET', '/tasks?status=todo')).status).toBe(200)
  } finally {
    await blocker.end()
  }
})
