import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { signUp, startSystem, type TestSystem, waitFor } from './helpers.ts'
import { type OtlpReceiver, type ReceivedSpan, SpanKind, startOtlpReceiver } from './otlp-receiver.ts'

// The system as `pnpm start --tracing` runs it (NATS included), every service exporting OTLP/HTTP to a
// receiver in this test process. A request through the gateway must come back as ONE trace: the gateway's
// server span, its call to the service, that service's server span, its events through NATS (the relay's
// publish, the consumer's processing) and each database statement, every span's parent in the same trace;
// and every log line the request wrote carries that trace id.

let system: TestSystem
let receiver: OtlpReceiver
let tasksDb: pg.Client

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
  tasksDb = new pg.Client({ connectionString: system.databaseUrls['task-service'] })
  await tasksDb.connect()
})

afterAll(async () => {
  await tasksDb?.end()
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
      // The hop through NATS: a consumer's processing is the child of the producer's publish.
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
  test('POST /tasks: gateway → task-service → its database, one trace, access from the read model; logs carry its id', async () => {
    const { api } = system
    const alice = await signUp(api, 'Tracy')
    const project = await api<{ id: number }>('POST', '/projects', {
      token: alice.token,
      body: { name: 'Traced' },
    })
    expect(project.status).toBe(201)
    // The task-service learns the membership from projects.member.added (its read model, docs/events.md):
    // then it decides access without asking the project-service.
    await waitFor('the membership in the task-service read model', async () => {
      const { rows } = await tasksDb.query(
        'select 1 from project_members where project_id = $1 and user_id = $2',
        [project.body.id, alice.id],
      )
      return rows.length === 1
    })

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
    // gateway server → gateway call → task-service server; no call to the project-service.
    expect(ancestry(tasks, spans)[0]).toBe(gateway)
    expect(
      spans.filter((span) => span.service === 'project-service'),
      describeTrace(spans),
    ).toEqual([])

    // Database statements, inside the service's request, without the values.
    for (const [service, server] of [['task-service', tasks]] as const) {
      const statements = databaseSpans(spans, service)
      expect(statements.length, `${service} database spans in\n${describeTrace(spans)}`).toBeGreaterThan(0)
      for (const statement of statements) {
        expect(ancestry(statement, spans)).toContain(server)
        expect(statement.name).toMatch(/^pg\.query:/)
        expect(JSON.stringify(statement.attributes)).not.toContain(secret)
      }
    }
    const insert = databaseSpans(spans, 'task-service').find((span) =>
      /insert/i.test(String(span.attributes['db.query.text'])),
    )
    expect(insert, describeTrace(spans)).toBeDefined()
    // The access decision: the read model's membership query, in the task-service's own database.
    expect(
      databaseSpans(spans, 'task-service').some((span) =>
        /project_members/.test(String(span.attributes['db.query.text'])),
      ),
      describeTrace(spans),
    ).toBe(true)

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

  test('DELETE /projects/{id}: gateway → project-service → its database → NATS → task-service, one trace found from the gateway log line', async () => {
    const { api } = system
    const owner = await signUp(api, 'Delia')
    const project = await api<{ id: number }>('POST', '/projects', {
      token: owner.token,
      body: { name: 'Short-lived' },
    })
    expect(project.status).toBe(201)

    // No traceparent from the client: the gateway starts the trace; its id is found in the gateway's log line.
    const deleted = await api('DELETE', `/projects/${project.body.id}`, { token: owner.token })
    expect(deleted.status).toBe(204)
    const requestId = deleted.headers.get('x-request-id') as string
    await waitFor('the gateway log line of the request', async () =>
      logLinesOf(requestId).some((l) => l.service === 'gateway'),
    )
    const gatewayLine = logLinesOf(requestId).find((l) => l.service === 'gateway')?.line as Record<
      string,
      unknown
    >
    const traceId = gatewayLine.trace_id as string
    expect(traceId).toMatch(/^[0-9a-f]{32}$/)

    const spans = await traceFrom(traceId, ['gateway', 'project-service', 'task-service'])
    expectOneConnectedTrace(spans, '')
    // The saga joins the request's trace: the relay's publish, then the task-service's processing of the
    // event (deleting the project's tasks) inside it.
    const publish = spans.find((span) => span.name === 'publish projects.project.deleted')
    expect(publish?.service, describeTrace(spans)).toBe('project-service')
    const processing = spans.find(
      (span) => span.service === 'task-service' && span.name === 'process projects.project.deleted',
    )
    expect(processing, describeTrace(spans)).toBeDefined()
    expect(ancestry(processing as ReceivedSpan, spans)).toContain(publish)
    expect(
      databaseSpans(spans, 'task-service').some(
        (span) =>
          /delete/i.test(String(span.attributes['db.query.text'])) &&
          ancestry(span, spans).includes(processing as ReceivedSpan),
      ),
      describeTrace(spans),
    ).toBe(true)
    expect(serverSpan(spans, 'gateway').name).toMatch(/^DELETE \/projects/)
    const projects = serverSpan(spans, 'project-service')
    expect(projects.name).toBe('DELETE /projects/:id')
    const statements = databaseSpans(spans, 'project-service')
    expect(
      statements.some((s) => /delete/i.test(String(s.attributes['db.query.text']))),
      describeTrace(spans),
    ).toBe(true)
    for (const { service, line } of logLinesOf(requestId)) {
      expect(line.trace_id, `${service}: ${JSON.stringify(line)}`).toBe(traceId)
    }
  })

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
