import { beforeAll, describe, expect, inject, test } from 'vitest'
import { pods } from './lib/cluster.ts'
import {
  activeTargets,
  ensurePrometheus,
  type PrometheusHandle,
  waitForPrometheus,
} from './lib/prometheus.ts'
import { MAIN, OPEN } from './lib/releases.ts'
import { waitFor } from './lib/run.ts'

// Prometheus in the cluster scrapes every pod of the system: the services, the gateway and each
// database's postgres_exporter, across the NetworkPolicies (scrapes come from namespace `monitoring`).

const target = inject('target')
let prometheus: PrometheusHandle

beforeAll(async () => {
  prometheus = await ensurePrometheus(target, [MAIN.namespace, OPEN.namespace])
  await waitForPrometheus(prometheus)
})

describe('Prometheus', () => {
  test('every pod of both releases is a scrape target, and every target is up', async () => {
    const expected: string[] = []
    for (const release of [MAIN, OPEN]) {
      for (const pod of await pods(release.namespace, `app.kubernetes.io/instance=${release.name}`)) {
        if (
          pod.metadata.deletionTimestamp ||
          pod.status.phase !== 'Running' ||
          pod.metadata.labels['app.kubernetes.io/component'] === 'test'
        )
          continue
        // NATS is scraped through its exporter sidecar; where the suite had to leave the exporter out
        // (lib/stand-ins.ts: not buildable here) its pod asks for no scrape.
        if (
          pod.metadata.labels['app.kubernetes.io/name'] === 'nats' &&
          pod.metadata.annotations?.['prometheus.io/scrape'] !== 'true'
        )
          continue
        expected.push(`${release.namespace}/${pod.metadata.name}`)
      }
    }
    // Services, gateways and databases of both releases.
    expect(expected.length).toBeGreaterThanOrEqual(14)
    const seen = await waitFor(
      'every pod to be scraped successfully',
      async () => {
        const targets = await activeTargets(prometheus)
        const byPod = new Map<string, string>()
        for (const t of targets) {
          const key = `${t.labels.namespace}/${t.labels.pod}`
          if (expected.includes(key) && byPod.get(key) !== 'up')
            byPod.set(key, t.health === 'up' ? 'up' : `${t.health}: ${t.lastError} (${t.scrapeUrl})`)
        }
        const missing = expected
          .filter((p) => byPod.get(p) !== 'up')
          .map((p) => `${p}: ${byPod.get(p) ?? 'no target'}`)
        if (missing.length > 0) throw new Error(missing.join('; '))
        return byPod
      },
      180_000,
      5000,
    )
    expect([...seen.values()].every((h) => h === 'up')).toBe(true)
  })
})
