import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { freePort, signUp, startSystem, type TestSystem, waitFor } from './helpers.ts'
import { type OtlpReceiver, type ReceivedSpan, SpanKind, startOtlpReceiver } from './otlp-receiver.ts'

// The system as `pnpm start --tracing` runs it, every service exporting OTLP/HTTP to a receiver in this test
// process. A request through the gateway must come back as ONE trace: the gateway's server span, its call to
// the service, that service's server span, its calls to other services and each database statement, every
// span's parent in the same trace; and every log line the request wrote carries that trace id.

function hasPrometheus(): boolean {
  try {
    execFileSync('prometheus', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

let system: TestSystem
let receiver: OtlpReceiver

beforeAll(async () => {
  receiver = await startOtlpReceiver()
  system = await startSystem({
    auth: 'required',
    baseEnv: {
      ...process.env,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_TRACES_SAMPLER: 'parentbased_always_on',
      // Export within a fraction of a second instead of the default 5 s.
      OTEL_BSP_SCHEDULE_DELAY: '100',
    },
  })
})

afterAll(async () => {
  await system?.destroy()
  await receiver?.close()
})

/** The JSON log lines of a service that carry this request id. */
function logLinesOf(requestId: string): { service: string; line: Record<string, unknown> }[] {
  const out: { service: string; line: Record<string, unknown> }[] = []
  for (const entry of system.logs) {
    const separator = entry.indexOf(' | ')
    const text = entry.slice(separator + 3)
    if (!text.startsWith('{')) continue
    try {
      const line = JSON.parse(text) as Record<string, unknown>
      if (line.request_id === requestId) out.push({ service: entry.slice(0, separator), line })
    } catch {
      // not a JSON line
    }
  }
  return out
}

/** The trace id on the gateway's log line of a request (the gateway started the trace). */
async function gatewayTraceId(requestId: string): Promise<string> {
  await waitFor('the gateway log line of the request', async () =>
    logLinesOf(requestId).some((l) => l.service === 'gateway'),
  )
  const line = logLinesOf(requestId).find((l) => l.service === 'gateway')?.line as Record<string, unknown>
  expect(line.trace_id).toMatch(/^[0-9a-f]{32}$/)
  return line.trace_id as string
}

/** A new user's GET /projects through the gateway in a trace the client starts (a sampled traceparent). */
async function tracedProjectList(name: string) {
  const user = await signUp(system.api, name)
  const traceId = randomBytes(16).toString('hex')
  const listed = await system.api('GET', '/projects', {
    token: user.token,
    headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
  })
  expect(listed.status).toBe(200)
  return { traceId, listed }
}

function spansOf(traceId: string): ReceivedSpan[] {
  return receiver.spans.filter((span) => span.traceId === traceId)
}

/** Waits until the trace has spans from every one of these services, and a little longer for stragglers. */
async function traceFrom(traceId: string, services: string[]): Promise<ReceivedSpan[]> {
  await waitFor(
    `spans of trace ${traceId} from ${services.join(', ')}`,
    async () => services.every((service) => spansOf(traceId).some((span) => span.service === service)),
    20_000,
  ).catch((error: Error) => {
    throw new Error(
      `${error.message}; received:\n${describeTrace(receiver.spans)}\n${system.logs.slice(-40).join('\n')}`,
    )
  })
  await new Promise((resolve) => setTimeout(resolve, 500))
  return spansOf(traceId)
}

/** The chain of span names from the root of the trace down to this span. */
function ancestry(span: ReceivedSpan, spans: ReceivedSpan[]): ReceivedSpan[] {
  const byId = new Map(spans.map((s) => [s.spanId, s]))
  const chain = [span]
  let current = span
  while (current.parentSpanId !== '' && byId.has(current.parentSpanId)) {
    current = byId.get(current.parentSpanId) as ReceivedSpan
    chain.unshift(current)
  }
  return chain
}

function describeTrace(spans: ReceivedSpan[]): string {
  return spans
    .map((s) => `${s.service} ${s.kind} ${s.name} ${s.spanId} <- ${s.parentSpanId || 'root'}`)
    .join('\n')
}

/**
 * The shape every trace of a proxied request has: one root (the gateway's server span, child of the client's
 * span when the client sent a traceparent), every other span's parent in the trace, server spans of a service
 * children of a client span of its caller, database spans inside their service's server span.
 */
function expectOneConnectedTrace(spans: ReceivedSpan[], clientSpanId?: string) {
  const ids = new Set(spans.map((span) => span.spanId))
  const roots = spans.filter((span) => !ids.has(span.parentSpanId))
  expect(
    roots.map((s) => `${s.service} ${s.name}`),
    describeTrace(spans),
  ).toHaveLength(1)
  const root = roots[0] as ReceivedSpan
  expect(root.service).toBe('gateway')
  expect(root.kind).toBe(SpanKind.SERVER)
  if (clientSpanId !== undefined) expect(root.parentSpanId).toBe(clientSpanId)
  const byId = new Map(spans.map((span) => [span.spanId, span]))
  for (const span of spans) {
    if (span === root) continue
    const parent = byId.get(span.parentSpanId) as ReceivedSpan
    if (span.kind === SpanKind.SERVER) {
      // A hop: the server span of one service is the child of the client span of the one that called it.
      expect(parent.kind, `${span.service} ${span.name}`).toBe(SpanKind.CLIENT)
      expect(parent.service).not.toBe(span.service)
    } else if (span.kind === SpanKind.CONSUMER) {
      // An event handled: the consumer's span is the child of the publish span of the service that sent it.
      expect(parent.kind, `${span.service} ${span.name}`).toBe(SpanKind.PRODUCER)
      expect(parent.service).not.toBe(span.service)
    } else {
      expect(parent.service, `${span.service} ${span.name}`).toBe(span.service)
    }
  }
}

function serverSpan(spans: ReceivedSpan[], service: string): ReceivedSpan {
  const found = spans.filter((span) => span.service === service && span.kind === SpanKind.SERVER)
  expect(found, `${service} server spans in\n${describeTrace(spans)}`).toHaveLength(1)
  return found[0] as ReceivedSpan
}

function databaseSpans(spans: ReceivedSpan[], service: string): ReceivedSpan[] {
  return spans.filter(
    (span) => span.service === service && span.attributes['db.system.name'] === 'postgresql',
  )
}

describe('one trace per request, across every hop', () => {
  test('POST /tasks: gateway → task-service → its database, one trace; logs carry its id', async () => {
    const { api } = system
    const alice = await signUp(api, 'Tracy')
    const project = await api<{ id: number }>('POST', '/projects', {
      token: alice.token,
      body: { name: 'Traced' },
    })
    expect(project.status).toBe(201)
    // The task-service answers "may Alice write in this project?" from its read model of memberships, kept by
    // the project-service's events: wait until the membership reached it (in the trace of POST /projects), so
    // this request is answered from the model, with no call to the project-service.
    const projectTrace = await gatewayTraceId(project.headers.get('x-request-id') as string)
    await waitFor('the membership event handled by the task-service', async () =>
      spansOf(projectTrace).some(
        (span) => span.service === 'task-service' && span.name === 'process projects.member.added',
      ),
    )

    // The client starts the trace: the gateway continues it (W3C traceparent).
    const traceId = randomBytes(16).toString('hex')
    const clientSpanId = randomBytes(8).toString('hex')
    const secret = `title-${randomBytes(6).toString('hex')}`
    const created = await api<{ id: number }>('POST', '/tasks', {
      token: alice.token,
      body: { title: secret, project_id: project.body.id, tags: ['traced'] },
      headers: { traceparent: `00-${traceId}-${clientSpanId}-01` },
    })
    expect(created.status).toBe(201)

    const spans = await traceFrom(traceId, ['gateway', 'task-service'])
    expectOneConnectedTrace(spans, clientSpanId)

    const gateway = serverSpan(spans, 'gateway')
    expect(gateway.name).toMatch(/^POST \/tasks/)
    const tasks = serverSpan(spans, 'task-service')
    expect(tasks.name).toBe('POST /tasks')
    expect(tasks.attributes['http.route']).toBe('/tasks')
    // gateway server → gateway handler → gateway call → task-service server.
    expect(ancestry(tasks, spans)[0]).toBe(gateway)
    expect(ancestry(tasks, spans).map((s) => s.kind)).toEqual([
      SpanKind.SERVER,
      SpanKind.INTERNAL,
      SpanKind.CLIENT,
      SpanKind.SERVER,
    ])

    // Database statements inside the task-service's request, without the values.
    const statements = databaseSpans(spans, 'task-service')
    expect(statements.length, describeTrace(spans)).toBeGreaterThan(0)
    for (const statement of statements) {
      expect(ancestry(statement, spans)).toContain(tasks)
      expect(statement.name).toMatch(/^pg\.query:/)
      expect(JSON.stringify(statement.attributes)).not.toContain(secret)
    }
    const insert = databaseSpans(spans, 'task-service').find((span) =>
      /insert/i.test(String(span.attributes['db.query.text'])),
    )
    expect(insert, describeTrace(spans)).toBeDefined()
    // A prepared statement's span is named by the statement's name: the membership read model's lookup.
    const lookup = databaseSpans(spans, 'task-service').find((span) => span.attributes['db.postgresql.plan'])
    expect(lookup?.name, describeTrace(spans)).toBe('pg.query:task_service_member_role tasks')

    // Exemplars: a scrape asking for OpenMetrics shows, on the request histogram's bucket that counted this
    // request, its trace id (gateway and task-service); a plain Prometheus scrape has none.
    const openMetrics = 'application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3'
    for (const [service, route] of [
      ['gateway', 'POST'],
      ['task-service', 'route="/tasks"'],
    ] as const) {
      const scrape = await fetch(`${system.services[service].url}/metrics`, {
        headers: { accept: openMetrics },
      })
      expect(scrape.headers.get('content-type')).toMatch(/^application\/openmetrics-text; version=1\.0\.0/)
      const text = await scrape.text()
      const exemplar = text
        .split('\n')
        .find(
          (line) => line.startsWith('http_server_request_duration_seconds_bucket{') && line.includes(traceId),
        )
      expect(exemplar, `${service}: no exemplar with trace ${traceId}`).toBeDefined()
      expect(exemplar).toContain(route)
      expect(exemplar).toMatch(new RegExp(`\\} \\d+ # \\{trace_id="${traceId}"\\} [0-9.e-]+ [0-9.]+$`))
      const plain = await (await fetch(`${system.services[service].url}/metrics`)).text()
      expect(plain).not.toContain(' # {')
      expect(plain).toContain('http_server_request_duration_seconds_bucket{')
    }

    // Every log line of the request, in every service, carries the trace id and the span of its service.
    const requestId = created.headers.get('x-request-id') as string
    const lines = logLinesOf(requestId)
    expect(new Set(lines.map((l) => l.service))).toEqual(new Set(['gateway', 'task-service']))
    for (const { service, line } of lines) {
      expect(line.trace_id, `${service}: ${JSON.stringify(line)}`).toBe(traceId)
      const own = spans.find((span) => span.spanId === line.span_id)
      expect(own?.service, `${service}: ${JSON.stringify(line)}`).toBe(service)
    }
  })

  test('DELETE /projects/{id}: the request, its event published by the project-service and consumed by the task-service, one trace', async () => {
    const { api } = system
    const owner = await signUp(api, 'Delia')
    const project = await api<{ id: number }>('POST', '/projects', {
      token: owner.token,
      body: { name: 'Short-lived' },
    })
    expect(project.status).toBe(201)
    const task = await api<{ id: number }>('POST', '/tasks', {
      token: owner.token,
      body: { title: 'Goes with its project', project_id: project.body.id },
    })
    expect(task.status).toBe(201)

    // No traceparent from the client: the gateway starts the trace; its id is found in the gateway's log line.
    const deleted = await api('DELETE', `/projects/${project.body.id}`, { token: owner.token })
    expect(deleted.status).toBe(204)
    const requestId = deleted.headers.get('x-request-id') as string
    const traceId = await gatewayTraceId(requestId)

    const subject = 'projects.project.deleted'
    await waitFor(
      `the task-service's process span of ${subject} in trace ${traceId}`,
      async () =>
        spansOf(traceId).some((span) => span.service === 'task-service' && span.kind === SpanKind.CONSUMER) &&
        databaseSpans(spansOf(traceId), 'task-service').length > 0,
      20_000,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; received:\n${describeTrace(spansOf(traceId))}`)
    })
    const spans = await traceFrom(traceId, ['gateway', 'project-service', 'task-service'])
    // The saga ran: the task-service deleted the project's task when the event reached it.
    expect((await api('GET', `/tasks/${task.body.id}`, { token: owner.token })).status).toBe(404)
    expectOneConnectedTrace(spans, '')
    expect(serverSpan(spans, 'gateway').name).toMatch(/^DELETE \/projects/)
    const projects = serverSpan(spans, 'project-service')
    expect(projects.name).toBe('DELETE /projects/:id')
    const statements = databaseSpans(spans, 'project-service')
    expect(
      statements.some((s) => /delete/i.test(String(s.attributes['db.query.text']))),
      describeTrace(spans),
    ).toBe(true)

    // The project-service's relay published the event in a PRODUCER span, child of the request that wrote it.
    const publishes = spans.filter((span) => span.kind === SpanKind.PRODUCER)
    expect(
      publishes.map((s) => `${s.service} ${s.name}`),
      describeTrace(spans),
    ).toEqual([`project-service publish ${subject}`])
    const publish = publishes[0] as ReceivedSpan
    expect(publish.attributes['messaging.system']).toBe('nats')
    expect(publish.attributes['messaging.destination.name']).toBe(subject)
    expect(ancestry(publish, spans)).toContain(projects)
    const byId = new Map(spans.map((span) => [span.spanId, span]))
    expect(byId.get(publish.parentSpanId)?.service).toBe('project-service')
    expect(byId.get(publish.parentSpanId)?.attributes['db.system.name']).toBeUndefined()

    // The task-service handled it in a CONSUMER span, child of that publish and linked to it, with the
    // handler's database statements (the tasks deleted, the inbox row) inside it.
    const consumed = spans.filter(
      (span) => span.service === 'task-service' && span.kind === SpanKind.CONSUMER,
    )
    expect(
      consumed.map((s) => s.name),
      describeTrace(spans),
    ).toEqual([`process ${subject}`])
    const handling = consumed[0] as ReceivedSpan
    expect(handling.parentSpanId).toBe(publish.spanId)
    expect(handling.links).toContainEqual({ traceId, spanId: publish.spanId })
    expect(handling.attributes['messaging.destination.name']).toBe(subject)
    // Nothing of the task-service in this trace is outside the event's handling: the request never called it.
    const taskSpans = spans.filter((span) => span.service === 'task-service')
    for (const span of taskSpans) expect(ancestry(span, spans), span.name).toContain(handling)
    const handlerStatements = databaseSpans(spans, 'task-service')
    expect(
      handlerStatements.some((s) => /delete/i.test(String(s.attributes['db.query.text']))),
      describeTrace(spans),
    ).toBe(true)
    // And it happened after the publish started: the parent links are causal, not only ids.
    expect(handling.startNs).toBeGreaterThanOrEqual(publish.startNs)
    expect(publish.startNs).toBeGreaterThanOrEqual(projects.startNs)

    for (const { service, line } of logLinesOf(requestId)) {
      expect(line.trace_id, `${service}: ${JSON.stringify(line)}`).toBe(traceId)
    }
  })

  test('the access log line of a request carries its trace and span ids, in every service', async () => {
    const { traceId, listed } = await tracedProjectList('Axel')
    const requestId = listed.headers.get('x-request-id') as string
    await waitFor('the access log lines of the request', async () => {
      const services = logLinesOf(requestId)
        .filter((l) => l.line.msg === 'request completed')
        .map((l) => l.service)
      return services.includes('gateway') && services.includes('project-service')
    })
    const spans = await traceFrom(traceId, ['gateway', 'project-service'])
    for (const { service, line } of logLinesOf(requestId).filter((l) => l.line.msg === 'request completed')) {
      expect(line.trace_id, `${service}: ${JSON.stringify(line)}`).toBe(traceId)
      expect(line.span_id, `${service}: ${JSON.stringify(line)}`).toBe(serverSpan(spans, service).spanId)
      expect(line.trace_flags).toBe('01')
    }
  })

  test('a request its client did not sample makes no span in any service: each call passes the decision on', async () => {
    const { api } = system
    const owner = await signUp(api, 'Unsampled')
    const other = await signUp(api, 'Unsampledtoo')
    // The sign-ups' own spans (sampled: no traceparent from the client) are exported within the next 100 ms.
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    const from = receiver.spans.length
    const traceId = randomBytes(16).toString('hex')
    const project = await api<{ id: number }>('POST', '/projects', {
      token: owner.token,
      body: { name: 'Unsampled' },
      headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-00` },
    })
    expect(project.status).toBe(201)
    // gateway → project-service → user-service (does the user exist?), then the membership event to the
    // task-service: every hop follows the client's "not sampled" (a service that got no trace context would start
    // a trace of its own, sampled: OTEL_TRACES_SAMPLER is parentbased_always_on here).
    const added = await api('POST', `/projects/${project.body.id}/members`, {
      token: owner.token,
      body: { user_id: other.id, role: 'editor' },
      headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-00` },
    })
    expect(added.status).toBe(201)
    const read = await api('GET', '/projects', {
      token: other.token,
      headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-00` },
    })
    expect(read.status).toBe(200)
    // The log lines still name the (unsampled) trace.
    const requestId = added.headers.get('x-request-id') as string
    await waitFor('the access log lines of the request', async () => {
      const services = logLinesOf(requestId)
        .filter((l) => l.line.msg === 'request completed')
        .map((l) => l.service)
      return services.includes('gateway') && services.includes('project-service')
    })
    for (const { service, line } of logLinesOf(requestId).filter((l) => l.line.msg === 'request completed')) {
      expect(line.trace_id, `${service}: ${JSON.stringify(line)}`).toBe(traceId)
      expect(line.trace_flags).toBe('00')
    }
    await new Promise((resolve) => setTimeout(resolve, 2_000))
    const since = receiver.spans.slice(from)
    expect(describeTrace(since.filter((span) => span.traceId === traceId))).toBe('')
    // Nor a trace of its own started by a service the context did not reach (the sign-ups' events, still being
    // handled, are spans of the sign-ups' traces, children of their publish spans).
    expect(describeTrace(since.filter((span) => span.parentSpanId === ''))).toBe('')
  })

  test('background work outside requests (outbox relay polls, consumers, health checks) starts no trace', async () => {
    // Several relay polls (every 250 ms), consumer fetches and gateway health checks with no request at all.
    const idleFrom = receiver.spans.length
    await new Promise((resolve) => setTimeout(resolve, 4_000))
    const idle = receiver.spans.slice(idleFrom)
    expect(describeTrace(idle)).toBe('')
    // Over the whole run, every root span is a request's server span at the gateway or an event's publish
    // span whose cause had no trace (none here: every event of this run was written inside a request).
    const receivedIds = new Set(receiver.spans.map((span) => span.spanId))
    const roots = receiver.spans.filter(
      (span) => span.parentSpanId === '' || !receivedIds.has(span.parentSpanId),
    )
    const strays = roots.filter((span) => !(span.service === 'gateway' && span.kind === SpanKind.SERVER))
    expect(describeTrace(strays)).toBe('')
  })

  // Debian's prometheus package (CI installs it for promtool) brings the server too.
  test.skipIf(!hasPrometheus() && !process.env.REQUIRE_PROMTOOL)(
    'Prometheus with exemplar storage scrapes the OpenMetrics of the services and keeps the trace id of a request',
    async () => {
      const { traceId } = await tracedProjectList('Exa')

      const dir = await mkdtemp(join(tmpdir(), 'task-manager-prometheus-'))
      const targets = ['gateway', 'project-service'].map(
        (name) => new URL(system.services[name as 'gateway' | 'project-service'].url).host,
      )
      await writeFile(
        join(dir, 'prometheus.yml'),
        `global: { scrape_interval: 1s }\nscrape_configs:\n  - job_name: services\n    static_configs: [{ targets: ${JSON.stringify(targets)} }]\n`,
      )
      const port = await freePort()
      const prometheus = spawn(
        'prometheus',
        [
          `--config.file=${join(dir, 'prometheus.yml')}`,
          `--storage.tsdb.path=${join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
          '--enable-feature=exemplar-storage',
        ],
        { stdio: 'ignore' },
      )
      const query = async <T>(path: string) =>
        ((await (await fetch(`http://127.0.0.1:${port}${path}`)).json()) as { data: T }).data
      try {
        const now = () => Math.round(Date.now() / 1000)
        let found: { seriesLabels: Record<string, string> }[] = []
        await waitFor(
          `the exemplar of trace ${traceId} in Prometheus`,
          async () => {
            const series = await query<
              { seriesLabels: Record<string, string>; exemplars: { labels: Record<string, string> }[] }[]
            >(
              `/api/v1/query_exemplars?query=http_server_request_duration_seconds_bucket&start=${now() - 300}&end=${now() + 60}`,
            )
            found = series.filter((one) => one.exemplars.some((e) => e.labels.trace_id === traceId))
            return new Set(found.map((series) => series.seriesLabels.service)).size === 2
          },
          30_000,
        )
        expect(new Set(found.map((series) => series.seriesLabels.service))).toEqual(
          new Set(['gateway', 'project-service']),
        )
        // Both targets scraped in OpenMetrics without a parse error, and the counters keep their names.
        const { activeTargets } = await query<{ activeTargets: { health: string; lastError: string }[] }>(
          '/api/v1/targets',
        )
        expect(activeTargets.map((t) => `${t.health} ${t.lastError}`)).toEqual(['up ', 'up '])
        const counters = await query<{ result: unknown[] }>(
          '/api/v1/query?query=process_cpu_user_seconds_total',
        )
        expect(counters.result).toHaveLength(2)
      } finally {
        prometheus.kill('SIGTERM')
        await new Promise((resolve) => prometheus.once('exit', resolve))
        await rm(dir, { recursive: true, force: true })
      }
    },
  )

  test('probes and scrapes make no spans; the exports were all OTLP/JSON trace requests', async () => {
    const before = receiver.spans.length
    for (const service of Object.values(system.services)) {
      expect((await fetch(`${service.url}/health/ready`)).status).toBe(200)
      expect((await fetch(`${service.url}/metrics`)).status).toBe(200)
    }
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const probeSpans = receiver.spans
      .slice(before)
      .filter((span) => /health|metrics/.test(String(span.attributes['url.path'] ?? span.name)))
    expect(probeSpans).toEqual([])
    expect(receiver.rejected).toEqual([])
  })
})
