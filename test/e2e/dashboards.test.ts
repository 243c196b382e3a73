import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { parse } from 'yaml'
import { type NatsServer, startNatsServer } from '../../packages/local-nats/src/index.ts'
import { DASHBOARD_DIR, dashboards, render, SERVICES } from '../../scripts/observability/dashboards.ts'
import { ROOT } from '../../scripts/start/system.ts'
import { signUp, startSystem, type TestSystem } from './helpers.ts'

// The chart's dashboards and alerts query what the services really expose: every metric a panel or a rule
// asks for is scraped here from the /metrics of real service processes (the system as `pnpm start` runs it),
// with the `service` label the queries select by.

const PROMQL_WORDS = new Set([
  'sum',
  'max',
  'min',
  'avg',
  'count',
  'rate',
  'increase',
  'deriv',
  'histogram_quantile',
  'label_replace',
  'by',
  'without',
  'and',
  'or',
  'unless',
  'on',
  'ignoring',
  'bool',
])

/** The metric names a PromQL expression reads (label matchers, groupings, ranges and strings left out). */
function metricsOf(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\b(?:by|without|on|ignoring)\s*\([^)]*\)/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
  const names = new Set<string>()
  for (const match of bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const word = match[0]
    if (PROMQL_WORDS.has(word) || word.includes(':')) continue
    names.add(word)
  }
  return [...names]
}

/** What `# TYPE` lines declare, with the series names each family answers to. */
function familiesOf(text: string): Set<string> {
  const names = new Set<string>()
  for (const line of text.split('\n')) {
    const match = /^# TYPE (\S+) (\S+)/.exec(line)
    if (!match) continue
    const [, name, type] = match as unknown as [string, string, string]
    names.add(name)
    if (type === 'histogram' || type === 'summary') {
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`)
    }
  }
  return names
}

/** Metrics the alerts read from Prometheus itself, the PostgreSQL exporter and kube-state-metrics. */
const NOT_FROM_SERVICES = new Set([
  'up',
  'pg_up',
  'kube_deployment_status_replicas_available',
  'kube_pod_container_status_restarts_total',
])

let system: TestSystem
let nats: NatsServer
let natsDir: string
const scraped = new Map<string, { families: Set<string>; text: string }>()

beforeAll(async () => {
  // With NATS, as deployed: the services' outbox relays and consumers run and expose their metrics.
  natsDir = await mkdtemp(join(tmpdir(), 'task-manager-nats-'))
  nats = await startNatsServer({ storeDir: natsDir })
  system = await startSystem({ auth: 'required', baseEnv: { ...process.env, NATS_URL: nats.url } })
  // Some traffic through every hop, so the scrape is of a system that has served requests.
  const user = await signUp(system.api, 'Grafana')
  const project = await system.api<{ id: number }>('POST', '/projects', {
    token: user.token,
    body: { name: 'Dashboards' },
  })
  await system.api('POST', '/tasks', {
    token: user.token,
    body: { title: 'Look at it', project_id: project.body.id },
  })
  for (const service of Object.values(system.services)) {
    const text = await (await fetch(`${service.url}/metrics`)).text()
    scraped.set(service.name, { families: familiesOf(text), text })
  }
})

afterAll(async () => {
  await system?.destroy()
  await nats?.stop()
  if (natsDir) await rm(natsDir, { recursive: true, force: true })
})

describe('Grafana dashboards', () => {
  test('the committed JSON is what scripts/observability/dashboards.ts writes', async () => {
    for (const [file, dashboard] of Object.entries(dashboards())) {
      const committed = await readFile(join(DASHBOARD_DIR, file), 'utf8')
      expect(committed, `${file}: run node --import tsx scripts/observability/dashboards.ts`).toBe(
        render(dashboard),
      )
    }
  })

  test('an overview and one per service, each panel with a query', () => {
    const all = dashboards()
    expect(Object.keys(all).sort()).toEqual(
      ['overview.json', ...SERVICES.map((s) => `${s.name}.json`)].sort(),
    )
    for (const dashboard of Object.values(all) as { panels: { type: string; targets?: unknown[] }[] }[]) {
      for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
        expect(panel.targets?.length).toBeGreaterThan(0)
      }
    }
  })

  test('every metric a service dashboard queries is on that service’s /metrics, with its service label', () => {
    for (const service of SERVICES) {
      const own = scraped.get(service.name)
      expect(own, service.name).toBeDefined()
      expect(own?.text).toContain(`service="${service.name}"`)
      const dashboard = dashboards()[`${service.name}.json`] as {
        panels: { title: string; targets?: { expr: string }[] }[]
      }
      for (const panel of dashboard.panels) {
        for (const target of panel.targets ?? []) {
          for (const metric of metricsOf(target.expr)) {
            expect(own?.families.has(metric), `${service.name} / ${panel.title}: ${metric}`).toBe(true)
          }
        }
      }
    }
  })

  test('every metric the overview queries is on some service’s /metrics', () => {
    const everywhere = new Set([...scraped.values()].flatMap(({ families }) => [...families]))
    const dashboard = dashboards()['overview.json'] as {
      panels: { title: string; targets?: { expr: string }[] }[]
    }
    for (const panel of dashboard.panels) {
      for (const target of panel.targets ?? []) {
        for (const metric of metricsOf(target.expr)) {
          expect(everywhere.has(metric), `overview / ${panel.title}: ${metric}`).toBe(true)
        }
      }
    }
  })
})

describe('alert rules', () => {
  test('every metric the rules read from the services is on some service’s /metrics', async () => {
    const everywhere = new Set([...scraped.values()].flatMap(({ families }) => [...families]))
    const rules = parse(
      await readFile(join(ROOT, 'charts/task-manager/files/prometheus/rules.yaml'), 'utf8'),
    ) as {
      groups: { rules: { expr: string; alert?: string; record?: string }[] }[]
    }
    let checked = 0
    for (const group of rules.groups) {
      for (const rule of group.rules) {
        for (const metric of metricsOf(rule.expr)) {
          if (NOT_FROM_SERVICES.has(metric)) continue
          expect(everywhere.has(metric), `${rule.alert ?? rule.record}: ${metric}`).toBe(true)
          checked++
        }
      }
    }
    expect(checked).toBeGreaterThan(20)
  })

  test('the PromQL reader finds the metrics of a query and nothing else', () => {
    expect(
      metricsOf(
        'histogram_quantile(0.99, sum by (service, le) (rate(http_server_request_duration_seconds_bucket{service="a", route!~"/health.*"}[$__rate_interval])))',
      ),
    ).toEqual(['http_server_request_duration_seconds_bucket'])
    expect(metricsOf('task_manager:api_errors:ratio_rate1h > (14.4 * 0.001) and up == 0')).toEqual(['up'])
  })
})
