import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, inject, test } from 'vitest'
import { kubectl, pods, ROOT, selectorOf, waitReleaseReady } from './lib/cluster.ts'
import { client, signUp } from './lib/http.ts'
import { lostWrites, startLoad } from './lib/load.ts'
import { MAIN, upgrade } from './lib/releases.ts'
import { sleep, waitFor } from './lib/run.ts'

// A PostgreSQL pod deleted under write load, and a service pod starting while its database is away.

const target = inject('target')
const api = client(target.entryUrl, MAIN.routeHost)
const ns = MAIN.namespace
const dbPod = `${MAIN.name}-task-service-postgresql-0`
let user: Awaited<ReturnType<typeof signUp>>
let projectId: number

beforeAll(async () => {
  await waitFor('the route to answer', async () => (await api('GET', '/health')).status === 200, 120_000)
  user = await signUp(api, 'Outage')
  const project = await api('POST', '/projects', { token: user.token, body: { name: 'Outages' } })
  if (project.status !== 201) throw new Error(`project: ${project.status}`)
  projectId = project.body.id
})

describe('database outage', () => {
  test('task-service database pod deleted under write load: 503 while down, recovery without restarting the service, no acknowledged write lost', async () => {
    const servicePods = await pods(ns, selectorOf(MAIN.name, 'task-service'))
    const restarts = Object.fromEntries(
      servicePods.map((p) => [p.metadata.uid, p.status.containerStatuses?.[0]?.restartCount]),
    )
    // 503 (with problem+json) is the answer while the database is away; anything else is a failure.
    const load = startLoad(api, {
      token: user.token,
      projectId,
      workers: 3,
      expectStatus: (s) => (s >= 200 && s < 300) || s === 503,
    })
    await sleep(5000)
    await kubectl(['-n', ns, 'delete', 'pod', dbPod, '--wait=false'])
    await waitFor(
      'the load to meet the outage (a 503)',
      async () => (load.snapshot().statuses['503'] ?? 0) > 0,
      120_000,
      500,
    )
    await waitReleaseReady(ns, MAIN.name, 600_000)
    // Writes succeed again after the outage.
    const recovered = await waitFor(
      'a task to be created after the database came back',
      async () =>
        (await api('POST', '/tasks', { token: user.token, body: { title: 'after', project_id: projectId } }))
          .status === 201 && Date.now(),
      180_000,
    )
    await sleep(3000)
    const report = await load.stop()
    expect(
      report.statuses['503'] ?? 0,
      `no 503 while the database was down: ${JSON.stringify(report.statuses)}`,
    ).toBeGreaterThan(0)
    expect(report.failures, 'answers other than 2xx and 503').toEqual([])
    expect(recovered).toBeTruthy()
    const after = await pods(ns, selectorOf(MAIN.name, 'task-service'))
    expect(
      Object.fromEntries(after.map((p) => [p.metadata.uid, p.status.containerStatuses?.[0]?.restartCount])),
    ).toEqual(restarts)
    expect(await lostWrites(api, report.acknowledged, user.token)).toEqual({ lost: [], unreadable: [] })
  })

  test('a service pod starting while its database is down waits in its migrate init container, without crashing (finding 2)', async () => {
    const db = `${MAIN.name}-project-service-postgresql-0`
    const defaults =
      readFileSync(join(ROOT, 'charts/microservice/values.yaml'), 'utf8').split('postgresql:')[1] ?? ''
    const cpu = /requests:\s*\n\s*cpu:\s*(\S+)/.exec(defaults)?.[1]
    const cpuLimit = /limits:\s*\n\s*cpu:\s*(\S+)/.exec(defaults)?.[1]?.replace(/"/g, '')
    if (!cpu || !cpuLimit)
      throw new Error(
        'no default postgresql.resources requests.cpu and limits.cpu in charts/microservice/values.yaml',
      )
    const resources = 'project-service.postgresql.resources'
    // Keep the database away for as long as this test needs: its new pod asks for more CPU than any node has
    // (values, nothing pulled; a request may not exceed its limit), so it stays Pending.
    await upgrade(MAIN, [`${resources}.requests.cpu=64`, `${resources}.limits.cpu=64`])
    // The StatefulSet replaces its pod with one that cannot be scheduled; wait until the old one is gone.
    await waitFor(
      'the project-service database pod to be replaced by a Pending one',
      async () => {
        const [pod] = await pods(ns, selectorOf(MAIN.name, 'project-service-postgresql'))
        if (pod?.status.phase !== 'Pending')
          await kubectl(['-n', ns, 'delete', 'pod', db, '--ignore-not-found', '--wait=false'])
        return pod?.status.phase === 'Pending'
      },
      240_000,
      3000,
    )
    const [old] = await pods(ns, selectorOf(MAIN.name, 'project-service'))
    await kubectl(['-n', ns, 'delete', 'pod', old!.metadata.name, '--wait=false'])
    // The replacement's migrate container waits, saying so, for at least 20 s.
    const waiting = await waitFor(
      'the new project-service pod to log that its migration waits for the database',
      async () => {
        const fresh = (await pods(ns, selectorOf(MAIN.name, 'project-service'))).find(
          (p) => p.metadata.uid !== old!.metadata.uid,
        )
        if (!fresh) return false
        const logs = await kubectl(['-n', ns, 'logs', fresh.metadata.name, '-c', 'migrate'], {
          allowFailure: true,
        })
        return logs.stdout.split('\n').filter((l) => /wait|retry|attempt/i.test(l)).length >= 2 && fresh
      },
      240_000,
      3000,
    )
    await sleep(20_000)
    await upgrade(MAIN, [`${resources}.requests.cpu=${cpu}`, `${resources}.limits.cpu=${cpuLimit}`])
    // A StatefulSet does not replace a pod stuck on the old revision by itself.
    await kubectl(['-n', ns, 'delete', 'pod', db, '--ignore-not-found', '--wait=false'])
    await waitReleaseReady(ns, MAIN.name, 600_000)
    const [pod] = (await pods(ns, selectorOf(MAIN.name, 'project-service'))).filter(
      (p) => p.metadata.uid === waiting.metadata.uid,
    )
    expect(pod, 'the pod that waited became the running one').toBeDefined()
    const migrate = pod!.status.initContainerStatuses?.find((c) => c.name === 'migrate')
    expect(migrate?.restartCount, 'the migrate init container crashed and was restarted').toBe(0)
    const { stdout } = await kubectl(['-n', ns, 'logs', pod!.metadata.name, '-c', 'migrate'])
    expect(stdout).not.toMatch(/^\s+at /m) // no stack trace
  })
})
