import type { Kysely, QueryCreator, Transaction } from 'kysely'
import type { EventData, EventType } from './catalog.js'
import { type EventEnvelope, newEvent } from './envelope.js'
import { type ChangeQuery, recordEvents, recordEventsWith } from './tables.js'
import { activeTraceparent } from './tracing.js'

/**
 * A producing service's side of the outbox: builds its events and writes them inside the caller's
 * transaction; `committed()` after the commit wakes the relay so the events leave at once rather than at
 * the next poll.
 */
export class Outbox {
  private wake: () => void = () => {}

  constructor(readonly producer: string) {}

  /** What the relay registers, so commits here wake it. */
  onCommitted(wake: () => void): void {
    this.wake = wake
  }

  event<T extends EventType>(type: T, data: EventData<T>, traceparent?: string | null): EventEnvelope<T> {
    return newEvent(type, data, { producer: this.producer, traceparent: activeTraceparent() ?? traceparent })
  }

  record(trx: Transaction<any> | Kysely<any>, events: readonly EventEnvelope[]): Promise<void> {
    return recordEvents(trx, events)
  }

  /** `change` and the events' outbox rows in one statement (recordEventsWith), inside the caller's transaction. */
  recordWith<DB>(
    trx: Transaction<DB> | Kysely<DB>,
    change: (db: QueryCreator<DB>) => ChangeQuery,
    events: readonly EventEnvelope[],
  ): Promise<void> {
    return recordEventsWith(trx, change, events)
  }

  committed(): void {
    this.wake()
  }
}
