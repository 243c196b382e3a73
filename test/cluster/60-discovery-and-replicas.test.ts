import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest'
import {
  CHART,
  helm,
  kubectl,
  kubectlJson,
  nodeIn,
  type Pod,
  pods,
  selectorOf,
  waitReleaseReady,
} from './lib/cluster.ts'
import { client, signUp } from './lib/http.ts'
import { MAIN, upgrade } from './lib/releases.ts'
import { sleep, waitFor } from './lib/run.ts'

// Discovery: the gateway resolves the task-service's headless Service and balances per request; replicas
// change through Helm values (Helm 4 applies server-side: `kubectl scale` and `helm upgrade` fight).

const target = inject('target')
const api = client(target.entryUrl, MAIN.routeHost)
const ns = MAIN.namespace
const deployment = `${MAIN.name}-task-service`
let user: Awaited<ReturnType<typeof signUp>>
let taskId: number

/** Requests each task-service pod has served for GET /tasks/:id, from its own /metrics. */
async function servedBy(list: Pod[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const pod of list) {
    const port = pod.metadata.annotations?.['prometheus.io/port'] ?? '8003'
    const text = await nodeIn<string>(
      ns,
      pod.metadata.name,
      'task-service',
      `console.log(JSON.stringify(await (await fetch('http://127.0.0.1:${port}/metrics')).text()))`,
    )
    out[pod.metadata.name] = text
      .split('\n')
      .filter(
        (l) =>
          l.startsWith('http_server_request_duration_seconds_count') &&
          l.includes('method="GET"') &&
          l.includes('route="/tasks/:id"'),
      )
      .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0)
  }
  return out
}

beforeAll(async () => {
  await waitFor('the route to answer', async () => (await api('GET', '/health')).status === 200, 120_000)
  user = await signUp(api, 'Discovery')
  // The previous file restarted the project-service and its database: until the gateway's breaker for it
  // closes again a write can answer 503 (retry-able, as its Retry-After says). And the task-service learns
  // the new project's owner from the membership event (or asks the project-service), a moment after it exists.
  const project = await waitFor(
    'the project-service to accept a project again',
    async () => {
      const answer = await api('POST', '/projects', { token: user.token, body: { name: 'Discovery' } })
      if (answer.status !== 201 && answer.status !== 503)
        throw new Error(`project: ${answer.status} ${JSON.stringify(answer.body)}`)
      return answer.status === 201 && answer
    },
    120_000,
    1000,
  )
  const task = await waitFor(
    'the task-service to accept a task in the new project',
    async () => {
      const answer = await api('POST', '/tasks', {
        token: user.token,
        body: { title: 'read me', project_id: project.body.id },
      })
      if (answer.status !== 201 && answer.status !== 422 && answer.status !== 503)
        throw new Error(`task: ${answer.status} ${JSON.stringify(answer.body)}`)
      return answer.status === 201 && answer
    },
    60_000,
    1000,
  )
  taskId = task.body.id
})

afterAll(async () => {
  await upgrade(MAIN, ['task-service.replicaCount=1'], ['--force-conflicts']).catch(() => undefined)
})

describe('DNS discovery', () => {
  test('the cluster DNS does not cache cluster.local answers (what headless-Service discovery needs)', async () => {
    const cm = await kubectlJson(['-n', 'kube-system', 'get', 'configmap', 'coredns'])
    const corefile: string = cm.data.Corefile
    const cache = /cache\s+\d+\s*(\{[^}]*\})?/.exec(corefile)
    if (cache) {
      expect(cache[1] ?? '', `CoreDNS caches cluster names: ${cache[0]}`).toMatch(
        /disable\s+success\s+cluster\.local/,
      )
      expect(cache[1] ?? '').toMatch(/disable\s+denial\s+cluster\.local/)
    }
  })

  test('task-service scaled to 3 through values: the gateway spreads requests over all 3 pods', async () => {
    await upgrade(MAIN, ['task-service.replicaCount=3'])
    await waitReleaseReady(ns, MAIN.name, 600_000)
    const list = (await pods(ns, selectorOf(MAIN.name, 'task-service'))).filter(
      (p) => !p.metadata.deletionTimestamp,
    )
    expect(list).toHaveLength(3)
    await sleep(12_000) // the gateway re-resolves every 5 s
    const before = await servedBy(list)
    const statuses: number[] = []
    for (let i = 0; i < 150; i++)
      statuses.push((await api('GET', `/tasks/${taskId}`, { token: user.token })).status)
    expect(statuses.filter((s) => s !== 200)).toEqual([])
    const after = await servedBy(list)
    const share = Object.fromEntries(
      list.map((p) => [p.metadata.name, (after[p.metadata.name] ?? 0) - (before[p.metadata.name] ?? 0)]),
    )
    // Each pod served a fair part (a third is 50; at least 15).
    for (const [pod, served] of Object.entries(share))
      expect(served, `GETs served by ${pod}: ${JSON.stringify(share)}`).toBeGreaterThanOrEqual(15)
  })

  test('one of the 3 pods deleted under GET load: zero failed GETs', async () => {
    const [victim] = await pods(ns, selectorOf(MAIN.name, 'task-service'))
    let running = true
    const failures: string[] = []
    let count = 0
    const worker = async () => {
      while (running) {
        const res = await api('GET', `/tasks/${taskId}`, { token: user.token, timeoutMs: 20_000 })
        count += 1
        if (res.status !== 200) failures.push(`${res.status} ${JSON.stringify(res.body).slice(0, 120)}`)
        await sleep(20)
      }
    }
    const workers = [worker(), worker(), worker()]
    await sleep(3000)
    await kubectl(['-n', ns, 'delete', 'pod', victim!.metadata.name, '--wait=true'], { timeoutMs: 180_000 })
    await waitReleaseReady(ns, MAIN.name, 600_000)
    await sleep(8000)
    running = false
    await Promise.all(workers)
    expect(count).toBeGreaterThan(100)
    expect(failures).toEqual([])
  })
})

describe('replicas under Helm 4 (finding 5)', () => {
  test('kubectl scale makes the next helm upgrade conflict; --force-conflicts gives the field back to the values', async () => {
    await kubectl(['-n', ns, 'scale', 'deployment', deployment, '--replicas=2'])
    const conflicted = await helm(['upgrade', MAIN.name, CHART, '-n', ns, '--reset-then-reuse-values'], {
      allowFailure: true,
      timeoutMs: 300_000,
    })
    expect(conflicted.code, 'helm upgrade after kubectl scale').not.toBe(0)
    expect(conflicted.stderr).toMatch(/conflict/i)
    const forced = await helm(
      ['upgrade', MAIN.name, CHART, '-n', ns, '--reset-then-reuse-values', '--force-conflicts'],
      { allowFailure: true, timeoutMs: 300_000 },
    )
    expect(forced.code, forced.stderr).toBe(0)
    const scale = await kubectlJson(['-n', ns, 'get', 'deployment', deployment])
    expect(scale.spec.replicas, 'replicas are the values again (3)').toBe(3)
    // And a later upgrade through values alone is clean.
    await upgrade(MAIN, ['task-service.replicaCount=1'])
    await waitReleaseReady(ns, MAIN.name, 600_000)
    expect((await kubectlJson(['-n', ns, 'get', 'deployment', deployment])).spec.replicas).toBe(1)
  })
})
