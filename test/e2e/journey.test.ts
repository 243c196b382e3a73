import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { client, signUp, startSystem, type TestSystem } from './helpers.ts'

// The system as `pnpm start` runs it (authentication on), used only through the gateway over real HTTP.

const ORIGIN = 'http://app.example.test'
let system: TestSystem

beforeAll(async () => {
  system = await startSystem({
    auth: 'required',
    env: {
      gateway: { CORS_ORIGINS: ORIGIN },
    },
  })
})

afterAll(async () => {
  await system?.destroy()
})

interface Task {
  id: number
  title: string
  status: string
  priority: string
  project_id: number
  user_id: number
  version: number
}

/** Every page of a listing, following `Link: <…>; rel="next"`. */
async function allPages(path: string, token: string): Promise<{ pages: number; tasks: Task[] }> {
  const tasks: Task[] = []
  let next: string | undefined = path
  let pages = 0
  while (next) {
    const page = await system.api<Task[]>('GET', next, { token })
    expect(page.status).toBe(200)
    tasks.push(...page.body)
    pages++
    const link = page.headers.get('link') ?? ''
    const match = /<([^>]+)>;\s*rel="next"/.exec(link)
    next = match
      ? new URL(match[1] as string, system.gatewayUrl).pathname +
        new URL(match[1] as string, system.gatewayUrl).search
      : undefined
    if (pages > 20) throw new Error('pagination does not end')
  }
  return { pages, tasks }
}

describe('user journey through the gateway', () => {
  test('two users, a shared and a private project, tasks created, listed, paged, updated, deleted', async () => {
    const { api } = system
    const alice = await signUp(api, 'Alice')
    const bob = await signUp(api, 'Bob')

    // Without a token the API is closed.
    const anonymous = await api('GET', '/tasks')
    expect(anonymous.status).toBe(401)
    expect(anonymous.headers.get('content-type')).toContain('application/problem+json')

    const shared = await api<{ id: number; role: string }>('POST', '/projects', {
      token: alice.token,
      body: { name: 'Launch' },
    })
    expect(shared.status).toBe(201)
    expect(shared.body.role).toBe('owner')
    const secret = await api<{ id: number }>('POST', '/projects', {
      token: alice.token,
      body: { name: 'Private' },
    })
    expect(secret.status).toBe(201)

    const member = await api('POST', `/projects/${shared.body.id}/members`, {
      token: alice.token,
      body: { user_id: bob.id, role: 'editor' },
    })
    expect(member.status).toBe(201)
    const lookup = await api('GET', `/projects/${shared.body.id}/members/${bob.id}`, { token: bob.token })
    expect(lookup.status).toBe(200)
    expect(lookup.body).toMatchObject({ project_id: shared.body.id, user_id: bob.id, role: 'editor' })

    // Seven private tasks of Alice, two of them done; one shared task by Bob.
    const created: Task[] = []
    for (let i = 0; i < 7; i++) {
      const response = await api<Task>('POST', '/tasks', {
        token: alice.token,
        body: {
          title: `Private task ${i}`,
          project_id: secret.body.id,
          priority: i % 2 ? 'high' : 'low',
          status: i < 2 ? 'done' : 'todo',
          tags: ['journey'],
        },
      })
      expect(response.status).toBe(201)
      expect(response.body.user_id).toBe(alice.id)
      created.push(response.body)
    }
    const bobs = await api<Task>('POST', '/tasks', {
      token: bob.token,
      body: { title: 'Shared task', project_id: shared.body.id },
    })
    expect(bobs.status).toBe(201)

    // Bob may not write into a project he is not a member of.
    const intrusion = await api('POST', '/tasks', {
      token: bob.token,
      body: { title: 'Sneaky', project_id: secret.body.id },
    })
    expect(intrusion.status).toBe(422)

    // Filter and paginate: pages of 3 give exactly the project's tasks, each once.
    const paged = await allPages(`/tasks?project_id=${secret.body.id}&limit=3`, alice.token)
    expect(paged.pages).toBe(3)
    expect(paged.tasks.map((task) => task.id).sort((a, b) => a - b)).toEqual(
      created.map((task) => task.id).sort((a, b) => a - b),
    )
    const done = await api<Task[]>('GET', `/tasks?project_id=${secret.body.id}&status=done`, {
      token: alice.token,
    })
    expect(done.body.map((task) => task.title).sort()).toEqual(['Private task 0', 'Private task 1'])
    const high = await api<Task[]>('GET', `/tasks?priority=high&project_id=${secret.body.id}`, {
      token: alice.token,
    })
    expect(high.body).toHaveLength(3)

    // Update with If-Match, then a stale ETag is refused and changes nothing.
    const target = created[3] as Task
    const read = await api<Task>('GET', `/tasks/${target.id}`, { token: alice.token })
    const etag = read.headers.get('etag') as string
    expect(etag).toBeTruthy()
    const replaced = await api<Task>('PUT', `/tasks/${target.id}`, {
      token: alice.token,
      headers: { 'if-match': etag },
      body: { title: 'Renamed', project_id: secret.body.id, priority: 'medium' },
    })
    expect(replaced.status).toBe(200)
    expect(replaced.body.title).toBe('Renamed')
    const stale = await api('PUT', `/tasks/${target.id}`, {
      token: alice.token,
      headers: { 'if-match': etag },
      body: { title: 'Lost update', project_id: secret.body.id },
    })
    expect(stale.status).toBe(412)
    expect(stale.headers.get('content-type')).toContain('application/problem+json')
    expect((await api<Task>('GET', `/tasks/${target.id}`, { token: alice.token })).body.title).toBe('Renamed')

    const moved = await api<Task>('PATCH', `/tasks/${target.id}/status`, {
      token: alice.token,
      body: { status: 'in_progress' },
    })
    expect(moved.status).toBe(200)
    expect(moved.body.status).toBe('in_progress')

    // Bob sees his shared task and nothing of Alice's private project.
    const bobsView = await api<Task[]>('GET', '/tasks', { token: bob.token })
    expect(bobsView.status).toBe(200)
    expect(bobsView.body.map((task) => task.id)).toEqual([bobs.body.id])
    expect((await api('GET', `/tasks/${target.id}`, { token: bob.token })).status).toBe(404)
    expect((await api('GET', `/tasks?project_id=${secret.body.id}`, { token: bob.token })).body).toEqual([])
    expect(
      (await api('PATCH', `/tasks/${target.id}/status`, { token: bob.token, body: { status: 'done' } }))
        .status,
    ).toBe(404)
    expect((await api('DELETE', `/tasks/${target.id}`, { token: bob.token })).status).toBe(404)
    expect((await api('GET', `/projects/${secret.body.id}`, { token: bob.token })).status).toBe(404)
    // …while Alice, the shared project's owner, sees Bob's task there.
    expect((await api('GET', `/tasks/${bobs.body.id}`, { token: alice.token })).status).toBe(200)

    const deleted = await api('DELETE', `/tasks/${target.id}`, { token: alice.token })
    expect(deleted.status).toBe(204)
    const gone = await api<{ detail: string }>('GET', `/tasks/${target.id}`, { token: alice.token })
    expect(gone.status).toBe(404)
    expect(gone.body.detail).toBe(`Task ${target.id} not found`)
  })
})

describe('CORS at the gateway', () => {
  test('a configured origin gets its preflight and CORS headers; another origin gets none', async () => {
    const preflight = (origin: string) =>
      fetch(`${system.gatewayUrl}/tasks`, {
        method: 'OPTIONS',
        headers: {
          origin,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization, content-type',
        },
      })
    const allowed = await preflight(ORIGIN)
    expect(allowed.status).toBeLessThan(300)
    expect(allowed.headers.get('access-control-allow-origin')).toBe(ORIGIN)
    expect(allowed.headers.get('access-control-allow-methods')).toContain('POST')
    expect((allowed.headers.get('access-control-allow-headers') ?? '').toLowerCase()).toContain(
      'authorization',
    )

    const refused = await preflight('http://evil.example.test')
    expect(refused.headers.get('access-control-allow-origin')).toBeNull()

    const simple = await fetch(`${system.gatewayUrl}/health`, { headers: { origin: ORIGIN } })
    expect(simple.headers.get('access-control-allow-origin')).toBe(ORIGIN)
    const other = await fetch(`${system.gatewayUrl}/health`, {
      headers: { origin: 'http://evil.example.test' },
    })
    expect(other.headers.get('access-control-allow-origin')).toBeNull()
  })
})

describe('per-client rate limits at the gateway', () => {
  test('one client exhausting its read budget gets 429 problem+json; another client is not limited', async () => {
    const { api } = system
    const greedy = await signUp(api, 'Greedy')
    const patient = await signUp(api, 'Patient')
    const statuses: number[] = []
    let limited: Awaited<ReturnType<typeof api>> | undefined
    // Bounded: at most 120 reads (the budget is 100 a minute). The token's first request, before the gateway has
    // verified it, counts against the client's address (docs/gateway.md, "Rate limits per real client"); the
    // next 100 against its subject.
    for (let i = 0; i < 120 && !limited; i++) {
      const response = await api('GET', '/tasks?limit=1', { token: greedy.token })
      statuses.push(response.status)
      if (response.status === 429) limited = response
    }
    expect(statuses.filter((status) => status === 200)).toHaveLength(101)
    expect(limited?.status).toBe(429)
    expect(limited?.headers.get('content-type')).toContain('application/problem+json')
    expect(Number(limited?.headers.get('retry-after'))).toBeGreaterThan(0)

    const other = await api('GET', '/tasks?limit=1', { token: patient.token })
    expect(other.status).toBe(200)
    // Still limited: the budget is per client, not reset by someone else's traffic.
    expect((await api('GET', '/tasks?limit=1', { token: greedy.token })).status).toBe(429)
  })
})

describe('restarts keep data and tokens', () => {
  test('after a full stop and start on the same data directory, the same token still reads the same task', async () => {
    const user = await signUp(system.api, 'Persistent')
    const project = await system.api<{ id: number }>('POST', '/projects', {
      token: user.token,
      body: { name: 'Keep' },
    })
    const task = await system.api<Task>('POST', '/tasks', {
      token: user.token,
      body: { title: 'Survives restarts', project_id: project.body.id },
    })
    expect(task.status).toBe(201)

    await system.stop()
    const again = await startSystem({ auth: 'required', dataDir: system.dataDir })
    try {
      const read = await again.api<Task>('GET', `/tasks/${task.body.id}`, { token: user.token })
      expect(read.status).toBe(200)
      expect(read.body.title).toBe('Survives restarts')
    } finally {
      await again.stop()
    }
    // --reset wipes everything: the account is gone.
    const reset = await startSystem({ auth: 'required', dataDir: system.dataDir, reset: true })
    try {
      const login = await reset.api('POST', '/auth/token', {
        body: { email: user.email, password: 'correct horse battery staple' },
      })
      expect(login.status).toBe(401)
      const stranger = await client(reset.gatewayUrl)('GET', `/tasks/${task.body.id}`, { token: user.token })
      expect(stranger.status).toBe(401) // a new signing key: old tokens are refused
    } finally {
      system = reset
    }
  }, 120_000)
})
