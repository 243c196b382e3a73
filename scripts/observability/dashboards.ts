// The Grafana dashboards of the umbrella chart, as code: `node --import tsx scripts/observability/dashboards.ts`
// writes charts/task-manager/files/dashboards/*.json, which templates/dashboards.yaml ships as ConfigMaps for the
// Grafana sidecar. One overview of the system and one per service, built from the same panels so every
// dashboard asks the same questions with the same queries. test/e2e/dashboards.test.ts checks that the
// committed files are what this writes and that every metric a panel queries is on the services' /metrics.

import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const DASHBOARD_DIR = resolve(
  fileURLToPath(new URL('../../charts/task-manager/files/dashboards', import.meta.url)),
)

interface Target {
  expr: string
  legendFormat: string
}

interface Panel {
  title: string
  description: string
  type: 'timeseries' | 'stat'
  unit: string
  targets: Target[]
  width?: number
}

export interface Service {
  name: 'gateway' | 'task-service' | 'user-service' | 'project-service'
  title: string
  /** Owns a PostgreSQL database (pool panels). */
  database: boolean
  /** Calls other services through the kit's Upstream client. */
  upstreams: boolean
  /** Publishes events through an outbox relay. */
  outbox: boolean
  /** Consumes events. */
  consumer: boolean
  /** Verifies tokens against a revocation list it follows from the USERS stream (every replica on its own). */
  follower: boolean
}

export const SERVICES: Service[] = [
  {
    name: 'gateway',
    title: 'Gateway',
    database: false,
    upstreams: false,
    outbox: false,
    consumer: false,
    follower: true,
  },
  {
    name: 'task-service',
    title: 'Task service',
    database: true,
    upstreams: true,
    outbox: false,
    consumer: true,
    follower: true,
  },
  {
    name: 'user-service',
    title: 'User service',
    database: true,
    upstreams: false,
    outbox: true,
    consumer: false,
    follower: false,
  },
  {
    name: 'project-service',
    title: 'Project service',
    database: true,
    upstreams: true,
    outbox: true,
    consumer: true,
    follower: true,
  },
]

/** Every request except probes and scrapes. */
const API = 'route!~"/health.*|/metrics|/openapi.json"'
const NS = 'namespace=~"$namespace"'
const rate = (selector: string) => `rate(${selector}[$__rate_interval])`

const t = (expr: string, legendFormat: string): Target => ({ expr, legendFormat })

function requestPanels(sel: string, by: string, legend: string): Panel[] {
  const count = `http_server_request_duration_seconds_count{${sel}, ${API}}`
  const bucket = `http_server_request_duration_seconds_bucket{${sel}, ${API}}`
  const errors = `http_server_request_duration_seconds_count{${sel}, ${API}, status_code=~"5.."}`
  return [
    {
      title: 'Request rate',
      description: 'Requests answered per second (probes and scrapes excluded).',
      type: 'timeseries',
      unit: 'reqps',
      targets: [t(`sum by (${by}) (${rate(count)})`, legend)],
    },
    {
      title: 'Errors (5xx share)',
      description: 'Share of requests answered 5xx. The API SLO allows 0.1 % at the gateway.',
      type: 'timeseries',
      unit: 'percentunit',
      targets: [t(`sum by (${by}) (${rate(errors)}) / sum by (${by}) (${rate(count)})`, legend)],
    },
    {
      title: 'Latency p99',
      description:
        '99th percentile of the time to answer. The API SLO wants 99 % within 500 ms at the gateway.',
      type: 'timeseries',
      unit: 's',
      targets: [t(`histogram_quantile(0.99, sum by (${by}, le) (${rate(bucket)}))`, legend)],
    },
    {
      title: 'Latency p50',
      description: 'Median time to answer.',
      type: 'timeseries',
      unit: 's',
      targets: [t(`histogram_quantile(0.5, sum by (${by}, le) (${rate(bucket)}))`, legend)],
    },
  ]
}

function runtimePanels(sel: string, by: string, legend: string): Panel[] {
  return [
    {
      title: 'CPU',
      description: 'CPU seconds per second used by the processes (1 = one core).',
      type: 'timeseries',
      unit: 'short',
      targets: [t(`sum by (${by}) (${rate(`process_cpu_seconds_total{${sel}}`)})`, legend)],
    },
    {
      title: 'Event-loop lag p99',
      description:
        'How late the event loop runs. Past MAX_EVENT_LOOP_DELAY_MS (1 s) a process sheds load with 503.',
      type: 'timeseries',
      unit: 's',
      targets: [t(`max by (${by}) (nodejs_eventloop_lag_p99_seconds{${sel}})`, legend)],
    },
    {
      title: 'Memory (RSS) and heap used',
      description: 'Resident memory of the processes (the pod limit is 256Mi) and the V8 heap in use.',
      type: 'timeseries',
      unit: 'bytes',
      targets: [
        t(`max by (${by}) (process_resident_memory_bytes{${sel}})`, `RSS ${legend}`),
        t(`max by (${by}) (nodejs_heap_size_used_bytes{${sel}})`, `heap ${legend}`),
      ],
    },
    {
      title: 'Garbage collection',
      description: 'Seconds per second spent in garbage collection, by kind.',
      type: 'timeseries',
      unit: 'percentunit',
      targets: [
        t(`sum by (${by}, kind) (${rate(`nodejs_gc_duration_seconds_sum{${sel}}`)})`, `${legend} {{kind}}`),
      ],
    },
  ]
}

function databasePanels(sel: string): Panel[] {
  return [
    {
      title: 'Database pool',
      description: 'Connections in use and idle against the pool size (DATABASE_POOL_MAX per pod).',
      type: 'timeseries',
      unit: 'short',
      targets: [
        t(`sum by (state) (db_client_connections{${sel}})`, '{{state}}'),
        t(`sum (db_client_connections_max{${sel}})`, 'max'),
      ],
    },
    {
      title: 'Waiting for a connection',
      description: 'Callers queued for a connection, and those that gave up (each answered 503).',
      type: 'timeseries',
      unit: 'short',
      targets: [
        t(`sum (db_client_connections_pending_requests{${sel}})`, 'waiting'),
        t(`sum (${rate(`db_client_connection_timeouts_total{${sel}}`)})`, 'timeouts/s'),
      ],
    },
  ]
}

function upstreamPanels(sel: string): Panel[] {
  return [
    {
      title: 'Calls to other services',
      description:
        'Calls through the circuit breaker, by upstream and outcome (ok, not_found, rejected, error, timeout, circuit_open).',
      type: 'timeseries',
      unit: 'reqps',
      targets: [
        t(
          `sum by (upstream, outcome) (${rate(`upstream_requests_total{${sel}}`)})`,
          '{{upstream}} {{outcome}}',
        ),
      ],
    },
    {
      title: 'Circuit breakers',
      description: '0 closed, 1 half-open, 2 open (calls refused at once).',
      type: 'timeseries',
      unit: 'short',
      targets: [t(`max by (upstream) (upstream_circuit_breaker_state{${sel}})`, '{{upstream}}')],
    },
  ]
}

function gatewayPanels(sel: string): Panel[] {
  return [
    {
      title: 'Proxied requests by upstream',
      description:
        'Requests the gateway sent on, by upstream and status (the gateway’s own answers included).',
      type: 'timeseries',
      unit: 'reqps',
      targets: [
        t(
          `sum by (upstream, status_code) (${rate(`gateway_upstream_request_duration_seconds_count{${sel}}`)})`,
          '{{upstream}} {{status_code}}',
        ),
      ],
    },
    {
      title: 'Upstream latency p99',
      description: '99th percentile of proxied requests, by upstream.',
      type: 'timeseries',
      unit: 's',
      targets: [
        t(
          `histogram_quantile(0.99, sum by (upstream, le) (${rate(`gateway_upstream_request_duration_seconds_bucket{${sel}}`)}))`,
          '{{upstream}}',
        ),
      ],
    },
    {
      title: 'Rate limited',
      description:
        'Requests answered 429 by the per-client limits, by budget, and by the per-client concurrency limit.',
      type: 'timeseries',
      unit: 'reqps',
      targets: [
        t(`sum by (budget) (${rate(`gateway_rate_limited_total{${sel}}`)})`, '{{budget}}'),
        t(`sum (${rate(`gateway_concurrency_limited_total{${sel}}`)})`, 'concurrency'),
      ],
    },
    {
      title: 'Circuit breakers and retries',
      description:
        'Breaker state per upstream and route class (2 = open), requests refused by an open breaker, retries.',
      type: 'timeseries',
      unit: 'short',
      targets: [
        t(
          `max by (upstream, route_class) (gateway_circuit_breaker_state{${sel}})`,
          'state {{upstream}} {{route_class}}',
        ),
        t(
          `sum by (upstream) (${rate(`gateway_circuit_breaker_rejections_total{${sel}}`)})`,
          'refused/s {{upstream}}',
        ),
        t(`sum by (upstream) (${rate(`gateway_upstream_retries_total{${sel}}`)})`, 'retries/s {{upstream}}'),
      ],
    },
    {
      title: 'Upstream endpoints',
      description: 'Pods the gateway balances over per upstream, active and ejected after failures.',
      type: 'timeseries',
      unit: 'short',
      targets: [t(`max by (upstream, state) (gateway_upstream_endpoints{${sel}})`, '{{upstream}} {{state}}')],
    },
  ]
}

/** An outbox's backlog: events not yet published and the age of the oldest; `by` '' for one service. */
function outboxBacklog(sel: string, by: string, legend: string): Target[] {
  const max = by ? `max by (${by})` : 'max'
  return [
    t(`${max} (events_outbox_pending{${sel}})`, `pending${legend}`),
    t(`${max} (events_outbox_oldest_pending_seconds{${sel}})`, `oldest (s)${legend}`),
  ]
}

/** A consumer's backlog: events not yet delivered and the commit-to-effect time of the last one. */
function consumerBacklog(sel: string): Target[] {
  return [
    t(`max by (consumer) (events_consumer_pending{${sel}})`, 'pending {{consumer}}'),
    t(`max by (consumer) (events_consumer_lag_seconds{${sel}})`, 'lag (s) {{consumer}}'),
  ]
}

function eventPanels(sel: string, service: Service): Panel[] {
  const panels: Panel[] = []
  if (service.outbox) {
    panels.push({
      title: 'Outbox',
      description:
        'Events committed but not yet published to NATS, the age of the oldest, events published, and the pods whose relay publishes (1 when healthy, 0 = nobody publishes).',
      type: 'timeseries',
      unit: 'short',
      targets: [
        ...outboxBacklog(sel, '', ''),
        t(`sum (${rate(`events_outbox_published_total{${sel}}`)})`, 'published/s'),
        t(`sum (events_relay_leader{${sel}})`, 'relay leaders'),
      ],
    })
  }
  if (service.consumer) {
    panels.push({
      title: 'Consumers',
      description:
        'Events waiting per consumer, the time from commit to effect of the last one, events handled, and the pods attached to the consumer with NATS connected (0 = nobody receives).',
      type: 'timeseries',
      unit: 'short',
      targets: [
        ...consumerBacklog(sel),
        t(`sum by (consumer) (${rate(`events_consumed_total{${sel}}`)})`, 'handled/s {{consumer}}'),
        t(`sum by (consumer) (events_consumer_connected{${sel}})`, 'connected {{consumer}}'),
      ],
    })
    panels.push({
      title: 'Failed and dead-lettered events',
      description:
        'Handler failures (each redelivered with backoff) and events given up on: copied to deadletter.<consumer>.<subject> after EVENTS_MAX_DELIVER deliveries, or at once when unreadable.',
      type: 'timeseries',
      unit: 'short',
      targets: [
        t(
          `sum by (consumer, outcome) (${rate(`events_consumed_total{${sel}, outcome=~"failed|dead_lettered"}`)})`,
          '{{outcome}}/s {{consumer}}',
        ),
      ],
    })
  }
  if (service.follower) {
    panels.push({
      title: 'Token revocations followed',
      description:
        'Per pod: 1 while it follows users.user.tokens_revoked and users.user.deleted (0 = it accepts tokens revoked since, until they expire), and the revocations it applied or ignored (not a valid event).',
      type: 'timeseries',
      unit: 'short',
      targets: [
        t(
          `min by (pod) (events_follower_connected{${sel}, follower="token-revocations"})`,
          'following {{pod}}',
        ),
        t(
          `sum by (outcome) (${rate(`events_followed_total{${sel}, follower="token-revocations"}`)})`,
          '{{outcome}}/s',
        ),
      ],
    })
  }
  return panels
}

interface Row {
  title: string
  panels: Panel[]
}

function dashboard(uid: string, title: string, description: string, rows: Row[]) {
  const panels: unknown[] = []
  let id = 1
  let y = 0
  for (const row of rows) {
    panels.push({
      id: id++,
      type: 'row',
      title: row.title,
      collapsed: false,
      gridPos: { h: 1, w: 24, x: 0, y },
      panels: [],
    })
    y += 1
    let x = 0
    for (const panel of row.panels) {
      const w = panel.width ?? 12
      if (x + w > 24) {
        x = 0
        y += 8
      }
      panels.push({
        id: id++,
        type: panel.type,
        title: panel.title,
        description: panel.description,
        datasource: { type: 'prometheus', uid: '${datasource}' },
        gridPos: { h: 8, w, x, y },
        fieldConfig: { defaults: { unit: panel.unit }, overrides: [] },
        options:
          panel.type === 'stat'
            ? { reduceOptions: { calcs: ['lastNotNull'] } }
            : { legend: { showLegend: true } },
        targets: panel.targets.map((target, i) => ({
          refId: String.fromCharCode(65 + i),
          datasource: { type: 'prometheus', uid: '${datasource}' },
          expr: target.expr,
          legendFormat: target.legendFormat,
        })),
      })
      x += w
    }
    y += 8
  }
  return {
    uid,
    title,
    description,
    tags: ['task-manager'],
    editable: false,
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-1h', to: 'now' },
    refresh: '30s',
    links: [
      {
        title: 'Task Manager',
        type: 'dashboards',
        tags: ['task-manager'],
        asDropdown: true,
        includeVars: true,
        keepTime: true,
      },
    ],
    templating: {
      list: [
        { name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus', current: {} },
        {
          name: 'namespace',
          label: 'Namespace',
          type: 'query',
          datasource: { type: 'prometheus', uid: '${datasource}' },
          query: {
            query: 'label_values(http_server_request_duration_seconds_count, namespace)',
            refId: 'namespaces',
          },
          definition: 'label_values(http_server_request_duration_seconds_count, namespace)',
          refresh: 2,
          includeAll: true,
          multi: false,
          current: {},
        },
      ],
    },
    panels,
  }
}

export function overview() {
  const api = `${NS}, service="gateway"`
  const all = NS
  const count = `http_server_request_duration_seconds_count{${api}, ${API}}`
  return dashboard(
    'task-manager-overview',
    'Task Manager / Overview',
    'The system at a glance: the API through the gateway, every service’s rate, errors and latency, and saturation (the event path included).',
    [
      {
        title: 'API through the gateway (the SLOs)',
        panels: [
          {
            title: 'API requests',
            description: 'Requests per second through the gateway.',
            type: 'stat',
            unit: 'reqps',
            width: 6,
            targets: [t(`sum (${rate(count)})`, 'requests')],
          },
          {
            title: 'API availability',
            description: 'Share of requests not answered 5xx over the last hour. SLO: 99.9 %.',
            type: 'stat',
            unit: 'percentunit',
            width: 6,
            targets: [
              t(
                `1 - sum (rate(http_server_request_duration_seconds_count{${api}, ${API}, status_code=~"5.."}[1h])) / sum (rate(${count}[1h]))`,
                'availability',
              ),
            ],
          },
          {
            title: 'API within 500 ms',
            description: 'Share of requests answered within 500 ms over the last hour. SLO: 99 %.',
            type: 'stat',
            unit: 'percentunit',
            width: 6,
            targets: [
              t(
                `sum (rate(http_server_request_duration_seconds_bucket{${api}, ${API}, le="0.5"}[1h])) / sum (rate(${count}[1h]))`,
                'within 500 ms',
              ),
            ],
          },
          {
            title: 'Rate limited',
            description: 'Requests per second answered 429 by the gateway’s per-client limits.',
            type: 'stat',
            unit: 'reqps',
            width: 6,
            targets: [t(`sum (${rate(`gateway_rate_limited_total{${api}}`)})`, 'rate limited')],
          },
        ],
      },
      { title: 'Every service: rate, errors, latency', panels: requestPanels(all, 'service', '{{service}}') },
      {
        title: 'Saturation',
        panels: [
          ...runtimePanels(all, 'service', '{{service}}').slice(0, 2),
          {
            title: 'Database pools in use',
            description: 'Share of each service’s pool connections checked out (1 = every connection busy).',
            type: 'timeseries',
            unit: 'percentunit',
            targets: [
              t(
                `sum by (service) (db_client_connections{${all}, state="used"}) / sum by (service) (db_client_connections_max{${all}})`,
                '{{service}}',
              ),
            ],
          },
          {
            title: 'Circuit breakers open',
            description: 'Breakers open (2) or half-open (1) towards each upstream.',
            type: 'timeseries',
            unit: 'short',
            targets: [
              t(
                `max by (service, upstream) (upstream_circuit_breaker_state{${all}})`,
                '{{service}} → {{upstream}}',
              ),
              t(
                `max by (service, upstream) (gateway_circuit_breaker_state{${all}})`,
                '{{service}} → {{upstream}}',
              ),
            ],
          },
          {
            title: 'Event outboxes',
            description:
              'Per producing service: events committed but not yet published to NATS, and the age of the oldest (near 0 when healthy).',
            type: 'timeseries',
            unit: 'short',
            targets: outboxBacklog(all, 'service', ' {{service}}'),
          },
          {
            title: 'Event consumers',
            description:
              'Per consumer: events in its stream not yet delivered, and the time from commit to effect of the last one.',
            type: 'timeseries',
            unit: 'short',
            targets: consumerBacklog(all),
          },
        ],
      },
    ],
  )
}

export function serviceDashboard(service: Service) {
  const sel = `${NS}, service="${service.name}"`
  const rows: Row[] = [
    { title: 'Requests', panels: requestPanels(sel, 'route, method', '{{method}} {{route}}') },
  ]
  if (service.name === 'gateway') rows.push({ title: 'Proxy and protections', panels: gatewayPanels(sel) })
  if (service.upstreams) rows.push({ title: 'Calls to other services', panels: upstreamPanels(sel) })
  if (service.database) rows.push({ title: 'Database', panels: databasePanels(sel) })
  if (service.outbox || service.consumer || service.follower)
    rows.push({ title: 'Events', panels: eventPanels(sel, service) })
  rows.push({ title: 'Runtime', panels: runtimePanels(sel, 'pod', '{{pod}}') })
  return dashboard(
    `task-manager-${service.name}`,
    `Task Manager / ${service.title}`,
    `The ${service.name}: requests per route, its dependencies and its processes.`,
    rows,
  )
}

/** Every dashboard, by file name. */
export function dashboards(): Record<string, unknown> {
  const out: Record<string, unknown> = { 'overview.json': overview() }
  for (const service of SERVICES) out[`${service.name}.json`] = serviceDashboard(service)
  return out
}

export const render = (dashboard: unknown) => `${JSON.stringify(dashboard, null, 2)}\n`

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await mkdir(DASHBOARD_DIR, { recursive: true })
  for (const [file, dashboard] of Object.entries(dashboards())) {
    const path = join(DASHBOARD_DIR, file)
    await mkdir(dirname(path), { recursive: true })
    await writeFile(path, render(dashboard))
    console.log(`wrote ${path}`)
  }
}
