import { describe, expect, inject, test } from 'vitest'
import { allHealthy, gatewayRoot, originalTask as original } from '../lib/contract.ts'
import { kubectl, pods, selectorOf } from './lib/cluster.ts'
import { type Api, client, signUp } from './lib/http.ts'
import { MAIN, OPEN } from './lib/releases.ts'
import { waitFor } from './lib/run.ts'

// The API as users reach it: through Traefik, once through the release's Gateway API HTTPRoute and once
// through its Ingress (each on its own host name, so a request can only take the path it names).

const target = inject('target')
const paths = [
  ['Gateway API HTTPRoute', 'routeHost'],
  ['Ingress', 'ingressHost'],
] as const

/** Traefik programs a route shortly after the gateway pods are Ready. */
async function reachable(api: Api, what: string) {
  await waitFor(
    `${what} to answer GET /health with 200`,
    async () => (await api('GET', '/health')).status === 200,
    120_000,
  )
}

interface Task {
  id: number
  title: string
  status: string
  priority: string
  project_id: number
  user_id: number
  tags: string[]
}

describe.each(paths)('user journey (auth required) through the %s', (what, hostKey) => {
  const api = client(target.entryUrl, MAIN[hostKey])

  test('register, token, project, members with roles, tasks CRUD and lists; another user gets 404', async () => {
    await reachable(api, what)
    const alice = await signUp(api, 'Alice')
    const bob = await signUp(api, 'Bob')
    const carol = await signUp(api, 'Carol')

    const anonymous = await api('GET', '/tasks')
    expect(anonymous.status).toBe(401)
    expect(anonymous.headers['content-type']).toContain('application/problem+json')

    const project = await api<{ id: number; role: string }>('POST', '/projects', {
      token: alice.token,
      body: { name: 'Launch' },
    })
    expect(project.status).toBe(201)
    expect(project.body.role).toBe('owner')
    const p = project.body.id
    expect(
      (
        await api('POST', `/projects/${p}/members`, {
          token: alice.token,
          body: { user_id: bob.id, role: 'editor' },
        })
      ).status,
    ).toBe(201)
    expect(
      (
        await api('POST', `/projects/${p}/members`, {
          token: alice.token,
          body: { user_id: carol.id, role: 'viewer' },
        })
      ).status,
    ).toBe(201)
    const members = await api<{ user_id: number; role: string }[]>('GET', `/projects/${p}/members`, {
      token: bob.token,
    })
    expect(members.status).toBe(200)
    expect(Object.fromEntries(members.body.map((m) => [m.user_id, m.role]))).toEqual({
      [alice.id]: 'owner',
      [bob.id]: 'editor',
      [carol.id]: 'viewer',
    })

    // Create (owner and editor), read, replace, patch the status, list with filters, delete.
    const created: Task[] = []
    for (const [who, title, priority] of [
      [alice, 'Write the docs', 'high'],
      [alice, 'Ship it', 'low'],
      [bob, 'Review the docs', 'medium'],
    ] as const) {
      const res = await api<Task>('POST', '/tasks', {
        token: who.token,
        body: { title, project_id: p, priority, tags: ['live'] },
      })
      expect(res.status, JSON.stringify(res.body)).toBe(201)
      expect(res.body).toMatchObject({
        title,
        priority,
        status: 'todo',
        project_id: p,
        user_id: who.id,
        tags: ['live'],
      })
      created.push(res.body)
    }
    const [docs, ship, review] = created as [Task, Task, Task]
    // The viewer reads but does not write.
    expect((await api('GET', `/tasks/${docs.id}`, { token: carol.token })).status).toBe(200)
    expect(
      (await api('POST', '/tasks', { token: carol.token, body: { title: 'Nope', project_id: p } })).status,
    ).toBe(403)

    const read = await api<Task>('GET', `/tasks/${docs.id}`, { token: bob.token })
    expect(read.status).toBe(200)
    const replaced = await api<Task>('PUT', `/tasks/${docs.id}`, {
      token: bob.token,
      headers: { 'if-match': String(read.headers.etag) },
      body: { title: 'Write the docs, again', project_id: p, priority: 'high', tags: ['live', 'docs'] },
    })
    expect(replaced.status).toBe(200)
    expect(replaced.body).toMatchObject({ title: 'Write the docs, again', tags: ['live', 'docs'] })
    const patched = await api<Task>('PATCH', `/tasks/${ship.id}/status`, {
      token: alice.token,
      body: { status: 'done' },
    })
    expect(patched.status).toBe(200)
    expect(patched.body.status).toBe('done')

    const all = await api<Task[]>('GET', `/tasks?project_id=${p}`, { token: carol.token })
    expect(all.status).toBe(200)
    expect(all.body.map((t) => t.id).sort((a, b) => a - b)).toEqual(
      created.map((t) => t.id).sort((a, b) => a - b),
    )
    const done = await api<Task[]>('GET', `/tasks?project_id=${p}&status=done`, { token: alice.token })
    expect(done.body.map((t) => t.id)).toEqual([ship.id])
    const high = await api<Task[]>('GET', `/tasks?project_id=${p}&priority=high`, { token: alice.token })
    expect(high.body.map((t) => t.id)).toEqual([docs.id])
    const page = await api<Task[]>('GET', `/tasks?project_id=${p}&limit=2`, { token: alice.token })
    expect(page.body).toHaveLength(2)
    expect(String(page.headers.link)).toContain('rel="next"')

    // A user outside the project sees none of it.
    const eve = await signUp(api, 'Eve')
    expect((await api('GET', `/tasks/${review.id}`, { token: eve.token })).status).toBe(404)
    expect((await api('GET', `/projects/${p}`, { token: eve.token })).status).toBe(404)
    expect((await api<Task[]>('GET', `/tasks?project_id=${p}`, { token: eve.token })).body).toEqual([])
    expect((await api('DELETE', `/tasks/${review.id}`, { token: eve.token })).status).toBe(404)

    expect((await api('DELETE', `/tasks/${review.id}`, { token: alice.token })).status).toBe(204)
    const gone = await api<{ detail: string }>('GET', `/tasks/${review.id}`, { token: alice.token })
    expect(gone.status).toBe(404)
    expect(gone.body.detail).toBe(`Task ${review.id} not found`)
  })
})

describe.each(paths)('the original contract (auth disabled) through the %s', (what, hostKey) => {
  const api = client(target.entryUrl, OPEN[hostKey])

  test('GET / and /health shapes, every task endpoint with its status codes, 422 and 404 problems', async () => {
    await reachable(api, what)
    const root = await api('GET', '/')
    expect(root.status).toBe(200)
    expect(root.body).toMatchObject(gatewayRoot)
    expect((await api('GET', '/health')).body).toEqual(allHealthy)

    const created = await api('POST', '/tasks', {
      body: { ...original, title: '<b>Write</b> the release notes' },
    })
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({ ...original, id: expect.any(Number), due_date: expect.any(String) })
    // Dates come back as the service writes them (milliseconds included): the same instant.
    expect(Date.parse(created.body.due_date)).toBe(Date.parse(original.due_date))
    const id = created.body.id as number
    const read = await api('GET', `/tasks/${id}`)
    expect(read.body).toMatchObject({ ...original, due_date: expect.any(String) })
    expect(Date.parse(read.body.due_date)).toBe(Date.parse(original.due_date))
    const list = await api('GET', `/tasks?user_id=${original.user_id}`)
    expect(list.status).toBe(200)
    expect(Array.isArray(list.body)).toBe(true)
    expect(list.body.some((t: Task) => t.id === id)).toBe(true)
    const put = await api('PUT', `/tasks/${id}`, { body: { ...original, title: 'Replaced', tags: [] } })
    expect(put.status).toBe(200)
    expect(put.body).toMatchObject({ title: 'Replaced', tags: [] })
    const status = await api('PATCH', `/tasks/${id}/status`, { body: { status: 'done' } })
    expect(status.status).toBe(200)
    expect(status.body.status).toBe('done')
    const invalid = await api('POST', '/tasks', { body: { ...original, priority: 'urgent' } })
    expect(invalid.status).toBe(422)
    expect(invalid.headers['content-type']).toContain('application/problem+json')
    expect((await api('DELETE', `/tasks/${id}`)).status).toBe(204)
    const gone = await api('GET', `/tasks/${id}`)
    expect(gone.status).toBe(404)
    expect(gone.body.detail).toBe(`Task ${id} not found`)
    expect((await api('GET', '/no-such-route')).status).toBe(404)
  })
})

/** The `client` of each access-log line of these request ids, in every pod of one service of a release. */
async function clientsInLogs(service: string, requestIds: string[]): Promise<Map<string, string>> {
  const seen = new Map<string, string>()
  for (const pod of await pods(MAIN.namespace, selectorOf(MAIN.name, service))) {
    const { stdout } = await kubectl(['-n', MAIN.namespace, 'logs', pod.metadata.name, '-c', service])
    for (const text of stdout.split('\n')) {
      if (!text.startsWith('{')) continue
      const line = JSON.parse(text) as { msg?: string; request_id?: string; client?: string }
      if (line.msg === 'request completed' && line.request_id && requestIds.includes(line.request_id))
        seen.set(line.request_id, String(line.client))
    }
  }
  return seen
}

describe('who the client is, through the ingress', () => {
  test('a client rotating X-Forwarded-For is one client to the gateway and to the services behind it', async () => {
    const api = client(target.entryUrl, MAIN.routeHost)
    await reachable(api, 'the HTTPRoute')
    const user = await signUp(api, 'Rotator')
    const run = `xff-${Date.now().toString(36)}`
    const ids = [0, 1, 2, 3].map((i) => `${run}-${i}`)
    for (const [i, id] of ids.entries()) {
      const answer = await api('GET', '/tasks?limit=1', {
        token: user.token,
        headers: { 'x-forwarded-for': `203.0.113.${i}`, 'x-real-ip': `203.0.113.${i}`, 'x-request-id': id },
      })
      expect(answer.status).toBe(200)
    }
    const gateway = await waitFor(
      'the gateway to log the four requests',
      async () => {
        const seen = await clientsInLogs('gateway', ids)
        return seen.size === ids.length && seen
      },
      60_000,
      2000,
    )
    const clients = new Set(gateway.values())
    expect(clients.size, `the gateway saw ${[...clients]}`).toBe(1)
    const [address] = [...clients]
    expect(address).not.toMatch(/^203\.0\.113\./)
    // What the gateway passes on is its own view: the task-service logs the same client for each request.
    const tasks = await waitFor(
      'the task-service to log the four requests',
      async () => {
        const seen = await clientsInLogs('task-service', ids)
        return seen.size === ids.length && seen
      },
      60_000,
      2000,
    )
    expect(new Set(tasks.values())).toEqual(new Set([address]))
  })
})
