import { context, propagation, SpanKind, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace'
import { useNatsServer, useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { EventBus, EventConsumer, Outbox, OutboxRelay, recordEvents, STREAMS } from '../src/index.js'
import { createSchema, open } from './fixtures/schema.js'

// Trace context through NATS with a real tracer provider (what the kit's instrument starts when tracing is on):
// the request that writes an event, the relay's publish and the consumer's handling are one trace.

const database = useTestDatabase('events_tracing')
const nats = useNatsServer()
const exporter = new InMemorySpanExporter()
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] })
let handle: ReturnType<typeof open>
const closers: (() => Promise<unknown>)[] = []

beforeAll(async () => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  trace.setGlobalTracerProvider(provider)
  handle = open(database.url)
  await createSchema(handle.db)
})
afterAll(async () => {
  while (closers.length > 0) await closers.pop()?.()
  await handle.close()
  await provider.shutdown()
  trace.disable()
  propagation.disable()
  context.disable()
})

it('a request writes an event, the relay publishes it, a consumer applies it: one trace, producer and consumer spans', async () => {
  const outbox = new Outbox('test-service')
  const seen: { spanId?: string; traceId?: string } = {}
  const bus = (name: string) => {
    const created = new EventBus({ url: nats.url, name })
    closers.push(() => created.close())
    return created
  }
  const relay = new OutboxRelay({
    db: handle.db,
    connectionString: database.url,
    bus: bus('relay'),
    stream: STREAMS.projects,
    service: 'test-service',
    pollMs: 50,
  }).start()
  outbox.onCommitted(() => relay.kick())
  closers.push(() => relay.stop())
  const consumer = new EventConsumer({
    bus: bus('consumer'),
    db: handle.db,
    stream: STREAMS.projects,
    durable: 'effects',
    handlers: {
      'projects.project.deleted': async (event, trx) => {
        const active = trace.getActiveSpan()?.spanContext()
        seen.spanId = active?.spanId
        seen.traceId = active?.traceId
        await trx
          .insertInto('effects')
          .values({ event_id: event.id, project_id: event.data.project_id })
          .execute()
      },
    },
  }).start()
  closers.push(() => consumer.stop())

  // The request: a server span, inside which the change and its event are written.
  const request = provider.getTracer('test').startSpan('DELETE /projects/:id', { kind: SpanKind.SERVER })
  const event = await context.with(trace.setSpan(context.active(), request), async () => {
    const written = outbox.event('projects.project.deleted', { project_id: 7, reason: 'deleted' })
    await handle.db.transaction().execute((trx) => recordEvents(trx, [written]))
    outbox.committed()
    return written
  })
  request.end()
  const { traceId, spanId: requestSpanId } = request.spanContext()
  expect(event.traceparent).toBe(`00-${traceId}-${requestSpanId}-01`)

  const deadline = Date.now() + 30_000
  const spans = () => exporter.getFinishedSpans()
  while (!spans().some((span) => span.name === 'process projects.project.deleted')) {
    if (Date.now() > deadline) throw new Error(`no consumer span; spans: ${spans().map((s) => s.name)}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const publish = spans().find((span) => span.name === 'publish projects.project.deleted')
  const processed = spans().find((span) => span.name === 'process projects.project.deleted')
  expect(publish?.kind).toBe(SpanKind.PRODUCER)
  expect(publish?.spanContext().traceId).toBe(traceId)
  expect(publish?.parentSpanContext?.spanId).toBe(requestSpanId)
  expect(publish?.attributes['messaging.system']).toBe('nats')
  expect(publish?.attributes['messaging.message.id']).toBe(event.id)

  expect(processed?.kind).toBe(SpanKind.CONSUMER)
  expect(processed?.spanContext().traceId).toBe(traceId)
  expect(processed?.parentSpanContext?.spanId).toBe(publish?.spanContext().spanId)
  expect(processed?.links.map((link) => link.context.spanId)).toEqual([publish?.spanContext().spanId])
  expect(processed?.attributes['messaging.consumer.group.name']).toBe('effects')
  // The handler ran inside the consumer span (its database statements are that span's children).
  expect(seen).toEqual({ spanId: processed?.spanContext().spanId, traceId })
})
