import type { App } from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { buildApp } from './helpers.js'

const database = useTestDatabase()
let app: App

interface TaskBody {
  id: number
  title: string
  priority: string
  due_date: string | null
  created_at: string
}

beforeAll(async () => {
  app = await buildApp(database.url)
  const seed = [
    {
      title: 'Alpha report',
      priority: 'low',
      status: 'todo',
      tags: ['docs'],
      due_date: '2026-12-03T00:00:00Z',
      project_id: 1,
    },
    {
      title: 'Beta launch',
      priority: 'high',
      status: 'in_progress',
      tags: ['ops', 'release'],
      due_date: '2026-12-01T00:00:00Z',
      project_id: 1,
    },
    {
      title: 'Gamma',
      description: 'fix the 100% CPU_bug',
      priority: 'medium',
      status: 'done',
      tags: [],
      due_date: null,
      project_id: 2,
    },
    {
      title: 'Delta review',
      priority: 'high',
      status: 'todo',
      tags: ['release'],
      due_date: '2026-12-02T00:00:00Z',
      project_id: 2,
    },
  ]
  for (const task of seed) {
    const response = await app.inject({ method: 'POST', url: '/tasks', payload: { user_id: 9, ...task } })
    expect(response.statusCode).toBe(201)
  }
})
afterAll(async () => {
  await app?.close()
})

async function titles(query: string): Promise<string[]> {
  const response = await app.inject({ url: `/tasks?${query}` })
  expect(response.statusCode, response.body).toBe(200)
  return response.json().map((task: TaskBody) => task.title)
}

describe('filters', () => {
  test.each([
    ['project_id=2', ['Gamma', 'Delta review']],
    ['status=todo', ['Alpha report', 'Delta review']],
    ['priority=high', ['Beta launch', 'Delta review']],
    ['tag=release', ['Beta launch', 'Delta review']],
    ['q=REPORT', ['Alpha report']],
    ['q=100%25', ['Gamma']],
    ['q=CPU_', ['Gamma']],
    ['q=%25', ['Gamma']],
    ['due_before=2026-12-02T12:00:00Z', ['Beta launch', 'Delta review']],
    ['due_after=2026-12-01T12:00:00Z', ['Alpha report', 'Delta review']],
    ['priority=high&project_id=1', ['Beta launch']],
  ])('%s', async (query, expected) => {
    expect(await titles(query)).toEqual(expected)
  })

  test('LIKE wildcards in q are literal: "_" does not match any character', async () => {
    expect(await titles('q=Gam_a')).toEqual([])
  })
})

describe('sorting', () => {
  test.each([
    ['sort=priority', ['Alpha report', 'Gamma', 'Beta launch', 'Delta review']],
    ['sort=-priority', ['Delta review', 'Beta launch', 'Gamma', 'Alpha report']],
    ['sort=due_date', ['Beta launch', 'Delta review', 'Alpha report', 'Gamma']],
    ['sort=-due_date', ['Gamma', 'Alpha report', 'Delta review', 'Beta launch']],
    ['sort=-created_at', ['Delta review', 'Gamma', 'Beta launch', 'Alpha report']],
  ])('%s', async (query, expected) => {
    expect(await titles(query)).toEqual(expected)
  })

  test('an unknown sort field is a 422', async () => {
    const response = await app.inject({ url: '/tasks?sort=title' })
    expect(response.statusCode).toBe(422)
    expect(response.json().errors[0]).toMatchObject({ in: 'querystring', field: 'sort' })
  })
})

describe('keyset pagination', () => {
  async function walk(query: string): Promise<{ titles: string[]; pages: number }> {
    const seen: string[] = []
    let url: string | null = `/tasks?${query}`
    let pages = 0
    while (url) {
      const response = await app.inject({ url })
      expect(response.statusCode, response.body).toBe(200)
      seen.push(...response.json().map((task: TaskBody) => task.title))
      pages++
      const link = response.headers.link as string | undefined
      url = link ? (/^<([^>]+)>; rel="next"$/.exec(link)?.[1] ?? null) : null
    }
    return { titles: seen, pages }
  }

  test.each(['sort=priority', 'sort=-due_date', 'sort=created_at', 'sort=-updated_at'])(
    'pages of 1 with %s give the same rows as one big page',
    async (sort) => {
      const whole = await titles(`${sort}&limit=200`)
      const paged = await walk(`${sort}&limit=1`)
      expect(paged.titles).toEqual(whole)
      expect(paged.pages).toBe(whole.length)
    },
  )

  test('the last page has no Link header; the default page size is 50', async () => {
    const response = await app.inject({ url: '/tasks' })
    expect(response.headers.link).toBeUndefined()
    expect(response.json().length).toBeLessThanOrEqual(50)
  })

  test('limit above 200 or below 1 is a 422', async () => {
    expect((await app.inject({ url: '/tasks?limit=201' })).statusCode).toBe(422)
    expect((await app.inject({ url: '/tasks?limit=0' })).statusCode).toBe(422)
  })

  test('a forged cursor or one from another sort is a 422', async () => {
    expect((await app.inject({ url: '/tasks?cursor=not-a-cursor' })).statusCode).toBe(422)
    const first = await app.inject({ url: '/tasks?sort=priority&limit=1' })
    const next = (first.headers.link as string).match(/cursor=([^&>]+)/)?.[1]
    const response = await app.inject({ url: `/tasks?sort=-due_date&cursor=${next}` })
    expect(response.statusCode).toBe(422)
    expect(response.json().detail).toMatch(/sort/)
  })

  test('rows inserted during a scan cause no duplicates and no gaps among the rows that existed', async () => {
    const before = await titles('project_id=3&limit=200')
    expect(before).toEqual([])
    for (let i = 0; i < 30; i++) {
      await app.inject({
        method: 'POST',
        url: '/tasks',
        payload: { title: `scan ${i}`, user_id: 3, project_id: 3 },
      })
    }
    const seen: string[] = []
    let url: string | null = '/tasks?project_id=3&limit=7'
    let inserted = 0
    while (url) {
      const response = await app.inject({ url })
      seen.push(...response.json().map((task: TaskBody) => task.title))
      // Insert more rows between pages: they sort after the cursor and must appear exactly once.
      await app.inject({
        method: 'POST',
        url: '/tasks',
        payload: { title: `late ${inserted++}`, user_id: 3, project_id: 3 },
      })
      const link = response.headers.link as string | undefined
      url = link ? (/^<([^>]+)>/.exec(link)?.[1] ?? null) : null
    }
    expect(new Set(seen).size).toBe(seen.length)
    for (let i = 0; i < 30; i++) expect(seen).toContain(`scan ${i}`)
  })
})
