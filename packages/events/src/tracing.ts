import type { MsgHdrs } from '@nats-io/transport-node'
import {
  type Context,
  context,
  type Link,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api'
import type { EventEnvelope } from './envelope.js'

/**
 * Trace context through NATS (OpenTelemetry's messaging conventions): the relay's publish is a PRODUCER span,
 * child of the request that wrote the event (the envelope's `traceparent`), and its context rides in the
 * message's `traceparent`/`tracestate` headers; a consumer's handling is a CONSUMER span, child of that
 * publish and linked to it, with the handler's database statements inside it. So a saga — a project deleted
 * through the gateway, its tasks deleted by the task-service a moment later — is one trace.
 *
 * Only @opentelemetry/api is used here: without a tracer provider (tracing off, the default) every call is a
 * no-op on a shared non-recording span, and the headers carry the envelope's traceparent as before.
 */
const tracer = () => trace.getTracer('@task-manager/events')

const natsSetter = {
  set(carrier: MsgHdrs, key: string, value: string) {
    carrier.set(key, value)
  },
}

const natsGetter = {
  get(carrier: MsgHdrs | undefined, key: string) {
    const value = carrier?.get(key)
    return value === undefined || value === '' ? undefined : value
  },
  keys(carrier: MsgHdrs | undefined) {
    return carrier ? carrier.keys() : []
  },
}

/**
 * The W3C traceparent of the span active now (the request being served, when tracing is on), else null.
 * An event written inside a traced request names that request's span as its cause.
 */
export function activeTraceparent(): string | null {
  if (!trace.getActiveSpan()?.spanContext()) return null
  const carrier: Record<string, string> = {}
  propagation.inject(context.active(), carrier)
  return carrier.traceparent ?? null
}

/** The context an event's `traceparent` names (its cause), or the root context. */
function causeOf(event: EventEnvelope): Context {
  if (!event.traceparent) return ROOT_CONTEXT
  return propagation.extract(ROOT_CONTEXT, { traceparent: event.traceparent })
}

async function inSpan<T>(span: Span, parent: Context, work: () => Promise<T>): Promise<T> {
  try {
    return await context.with(trace.setSpan(parent, span), work)
  } catch (error) {
    span.recordException(error as Error)
    span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message })
    throw error
  } finally {
    span.end()
  }
}

/**
 * Runs `publish` in a PRODUCER span `publish <subject>` whose parent is the event's cause, after writing that
 * span's context (or, with tracing off, the event's own traceparent) into the message headers.
 */
export function tracedPublish<T>(
  event: EventEnvelope,
  headers: MsgHdrs,
  publish: () => Promise<T>,
): Promise<T> {
  const parent = causeOf(event)
  const span = tracer().startSpan(
    `publish ${event.type}`,
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        'messaging.system': 'nats',
        'messaging.operation.type': 'send',
        'messaging.operation.name': 'publish',
        'messaging.destination.name': event.type,
        'messaging.message.id': event.id,
      },
    },
    parent,
  )
  if (span.isRecording()) propagation.inject(trace.setSpan(parent, span), headers, natsSetter)
  else if (event.traceparent) headers.set('traceparent', event.traceparent)
  return inSpan(span, parent, publish)
}

/**
 * Runs a consumer's handling of one message in a CONSUMER span `process <subject>`: a child of the publish
 * span the headers name (so the reaction joins the trace of the request that caused it) and linked to it.
 */
export function tracedProcess<T>(
  consumer: string,
  subject: string,
  headers: MsgHdrs | undefined,
  attributes: { messageId?: string; deliveryCount: number },
  work: () => Promise<T>,
): Promise<T> {
  const parent = propagation.extract(ROOT_CONTEXT, headers, natsGetter)
  const producer = trace.getSpanContext(parent)
  const links: Link[] = producer ? [{ context: producer }] : []
  const span = tracer().startSpan(
    `process ${subject}`,
    {
      kind: SpanKind.CONSUMER,
      links,
      attributes: {
        'messaging.system': 'nats',
        'messaging.operation.type': 'process',
        'messaging.operation.name': 'process',
        'messaging.destination.name': subject,
        'messaging.consumer.group.name': consumer,
        'messaging.message.id': attributes.messageId,
        'messaging.nats.delivery_count': attributes.deliveryCount,
      },
    },
    parent,
  )
  return inSpan(span, parent, work)
}
