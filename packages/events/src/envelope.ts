import { randomUUID } from 'node:crypto'
import { Value } from 'typebox/value'
import { EVENTS, type EventData, type EventType } from './catalog.js'

/**
 * One domain event as it travels: versioned JSON, the same bytes in the outbox row and the NATS
 * message. `type` is also the subject; `id` is the message id the broker deduplicates on and the key
 * every consumer's inbox records.
 */
export interface EventEnvelope<T extends EventType = EventType> {
  id: string
  type: T
  schema_version: number
  occurred_at: string
  aggregate_type: string
  aggregate_id: string
  producer: string
  /** W3C trace context of the request that caused the event (also sent as the message's header). */
  traceparent: string | null
  data: EventData<T>
}

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/

/** A W3C traceparent header value, or null when absent or malformed. */
export function traceparentOf(value: unknown): string | null {
  return typeof value === 'string' && TRACEPARENT.test(value) ? value : null
}

export function newEvent<T extends EventType>(
  type: T,
  data: EventData<T>,
  context: { producer: string; traceparent?: string | null; aggregateId?: string | number },
): EventEnvelope<T> {
  const definition = EVENTS[type]
  const aggregateId =
    context.aggregateId ?? (data as Record<string, unknown>)[`${definition.aggregate}_id`] ?? ''
  return {
    id: randomUUID(),
    type,
    schema_version: definition.version,
    occurred_at: new Date().toISOString(),
    aggregate_type: definition.aggregate,
    aggregate_id: String(aggregateId),
    producer: context.producer,
    traceparent: traceparentOf(context.traceparent),
    data,
  }
}

export class InvalidEvent extends Error {
  override name = 'InvalidEvent'
}

/** Parses and checks a received event against the catalog; throws InvalidEvent (a poison event). */
export function parseEvent(bytes: Uint8Array | string): EventEnvelope {
  let value: unknown
  try {
    value = JSON.parse(typeof bytes === 'string' ? bytes : new TextDecoder().decode(bytes))
  } catch {
    throw new InvalidEvent('not JSON')
  }
  const event = value as Partial<EventEnvelope>
  if (!event || typeof event !== 'object' || typeof event.id !== 'string' || typeof event.type !== 'string')
    throw new InvalidEvent('no id or type')
  const definition = (EVENTS as Record<string, (typeof EVENTS)[EventType]>)[event.type]
  if (!definition) throw new InvalidEvent(`unknown event type ${event.type}`)
  if (event.schema_version !== definition.version)
    throw new InvalidEvent(
      `${event.type} schema version ${event.schema_version} is not ${definition.version}`,
    )
  if (!Value.Check(definition.data, event.data))
    throw new InvalidEvent(`${event.type} data does not match its schema`)
  return event as EventEnvelope
}
