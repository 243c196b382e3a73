import { beforeAll, describe, expect, inject, onTestFinished, test } from 'vitest'
import { pods, SERVICES, selectorOf, waitReleaseReady } from './lib/cluster.ts'
import { client, signUp } from './lib/http.ts'
import { lostWrites, startLoad } from './lib/load.ts'
import { followLogs } from './lib/logs.ts'
import { MAIN, upgrade } from './lib/releases.ts'
import { sleep, waitFor } from './lib/run.ts'

// Zero-downtime: `helm upgrade` with a changed config rolls each service while steady load goes through
// the Gateway API route; no request may fail and every acknowledged write must still be there.

const target = inject('target')
const api = client(target.entryUrl, MAIN.routeHost)
let user: Awaited<ReturnType<typeof signUp>>
let projectId: number

beforeAll(async () => {
  await waitFor('the route to answer', async () => (await api('GET', '/health')).status === 200, 120_000)
  user = await signUp(api, 'Rolling')
  const project = await api('POST', '/projects', { token: user.token, body: { name: 'Rolling upgrades' } })
  if (project.status !== 201) throw new Error(`project: ${project.status}`)
  projectId = project.body.id
})

describe('rolling upgrade under steady load', () => {
  test.each(SERVICES)(
    '%s: every pod replaced, zero failed requests, zero lost acknowledged writes',
    async (service) => {
      const before = new Set(
        (await pods(MAIN.namespace, selectorOf(MAIN.name, service))).map((p) => p.metadata.uid),
      )
      // What the gateway and the rolled service log meanwhile goes with a failure (the old pods are gone by then).
      const logs = [...new Set(['gateway', service])].map((name) =>
        followLogs(MAIN.namespace, selectorOf(MAIN.name, name)),
      )
      onTestFinished(() => {
        for (const each of logs) each.stop()
      })
      const load = startLoad(api, {
        token: user.token,
        projectId,
        login: { email: user.email, password: user.password },
        workers: 3,
      })
      await sleep(5000)
      const { warnings } = await upgrade(MAIN, [`${service}.env.ROLLOUT_MARK=r${Date.now()}`])
      expect(warnings).toEqual([])
      await waitReleaseReady(MAIN.namespace, MAIN.name, 600_000)
      await waitFor(
        `the old ${service} pods to be gone`,
        async () =>
          (await pods(MAIN.namespace, selectorOf(MAIN.name, service))).every(
            (p) => !before.has(p.metadata.uid),
          ),
        180_000,
      )
      await sleep(5000) // load continues on the new pods only
      const report = await load.stop()
      const logged = logs.flatMap((each) => each.stop())
      expect(
        report.failures,
        `failed requests during the ${service} rollout (load started at ${new Date(report.startedAt).toISOString()}); warnings the pods logged meanwhile:\n${logged.join('\n') || '(none)'}\n`,
      ).toEqual([])
      expect(report.acknowledged.length, 'writes acknowledged during the rollout').toBeGreaterThan(20)
      expect(await lostWrites(api, report.acknowledged, user.token)).toEqual({ lost: [], unreadable: [] })
    },
  )
})
