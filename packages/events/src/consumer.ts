import { AckPolicy, type ConsumerMessages, DeliverPolicy, type JsMsg } from '@nats-io/jetstream'
import { headers as natsHeaders } from '@nats-io/transport-node'
import { isDatabaseUnavailable } from '@task-manager/service-kit'
import type { Kysely, Transaction } from 'kysely'
import { Counter, Gauge, type Registry } from 'prom-client'
import { type EventBus, type Logger, nanos } from './bus.js'
import type { EventType } from './catalog.js'
import { STREAMS } from './catalog.js'
import { type EventEnvelope, InvalidEvent, parseEvent } from './envelope.js'
import { metricsPerRegistry, receivingGauge, Subscription } from './subscription.js'
import type { InboxDatabase } from './tables.js'
import { tracedProcess } from './tracing.js'

export type EventHandler<T extends EventType = EventType> = (
  event: EventEnvelope<T>,
  trx: Transaction<any>,
) => Promise<void>

export type EventHandlers = { [T in EventType]?: EventHandler<T> }

export interface EventConsumerOptions {
  bus: EventBus
  /** The consuming service's database (its inbox table is there). */
  db: Kysely<any>
  stream: (typeof STREAMS)[keyof typeof STREAMS]
  /** The durable consumer's name: one per consuming service, shared by its replicas. */
  durable: string
  /** What to do with each event type; the consumer's filter is exactly these subjects. */
  handlers: EventHandlers
  /** Deliveries before an event goes to the dead-letter stream. Default 6. */
  maxDeliver?: number
  /** Delays between redeliveries of a failing event (the last repeats). Default 0.5 s, 2 s, 10 s, 30 s. */
  backoffMs?: number[]
  /** How long a delivered event may go unacknowledged before it is redelivered. Default 30 s. */
  ackWaitMs?: number
  /** Errors retried in place, without counting a delivery (the database being down). */
  isTransient?: (error: unknown) => boolean
  registry?: Registry
  log?: Logger
  /** Called after an event's transaction committed (tests, read-your-events). */
  onApplied?: (event: EventEnvelope) => void
}

const OUTCOMES = ['applied', 'duplicate', 'failed', 'dead_lettered'] as const

function createMetrics(registers: Registry[]) {
  /** The started consumers of this registry, read at each scrape. */
  const running = new Set<EventConsumer>()
  return {
    running,
    connected: receivingGauge({
      name: 'events_consumer_connected',
      help: '1 while this replica receives from its durable consumer (NATS connected, consumer set up), 0 while it waits or retries',
      label: 'consumer',
      registers,
      running,
      labelOf: (consumer) => consumer.durable,
    }),
    consumed: new Counter({
      name: 'events_consumed_total',
      help: 'Events a consumer handled, by outcome (applied, duplicate, failed, dead_lettered)',
      labelNames: ['consumer', 'outcome'] as const,
      registers,
    }),
    lag: new Gauge({
      name: 'events_consumer_lag_seconds',
      help: 'Time from an event being committed by its producer to its effect being committed here (last event)',
      labelNames: ['consumer'] as const,
      registers,
    }),
    pending: new Gauge({
      name: 'events_consumer_pending',
      help: 'Events in the stream this consumer has not yet been delivered',
      labelNames: ['consumer'] as const,
      registers,
    }),
  }
}

const metricsFor = metricsPerRegistry(createMetrics)

/**
 * A durable JetStream pull consumer that applies each event exactly once in effect:
 * - the handler runs in a database transaction that also inserts the event id into the inbox; an id
 *   already there means the effect was applied, so the event is only acknowledged (redelivery, or a
 *   re-publish the broker's dedupe window no longer caught);
 * - the acknowledgement is sent after the commit; a crash in between redelivers, and the inbox says done;
 * - one event in flight at a time (max_ack_pending 1), so events apply in stream order;
 * - a database outage is retried in place; any other failure is redelivered with backoff, and after
 *   `maxDeliver` deliveries the event is copied to `deadletter.<consumer>.<subject>` and terminated, so
 *   a poison event never blocks the events behind it for longer than its backoff.
 */
export class EventConsumer extends Subscription {
  private readonly maxDeliver: number
  private readonly backoffMs: number[]
  private readonly isTransient: (error: unknown) => boolean
  private readonly metrics: ReturnType<typeof createMetrics>
  private announced = false

  constructor(private readonly options: EventConsumerOptions) {
    super(options)
    this.maxDeliver = options.maxDeliver ?? 6
    this.backoffMs = options.backoffMs ?? [500, 2_000, 10_000, 30_000]
    this.isTransient = options.isTransient ?? isDatabaseUnavailable
    this.metrics = metricsFor(options.registry)
    // Every outcome from the start, so the first dead-lettered event is an increase Prometheus can see.
    for (const outcome of OUTCOMES) this.metrics.consumed.inc({ consumer: options.durable, outcome }, 0)
  }

  get subjects(): string[] {
    return Object.keys(this.options.handlers)
  }

  get durable(): string {
    return this.options.durable
  }

  override start(): this {
    this.metrics.running.add(this)
    return super.start()
  }

  override async stop(): Promise<void> {
    this.metrics.running.delete(this)
    await super.stop()
  }

  private async setUp(): Promise<void> {
    const { bus, stream, durable } = this.options
    await bus.ensureStream(stream)
    await bus.ensureStream(STREAMS.deadLetter)
    const jsm = await bus.manager()
    const backoff = this.backoffMs.slice(0, this.maxDeliver - 1)
    const config = {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subjects: this.subjects,
      max_deliver: this.maxDeliver,
      ack_wait: nanos(this.options.ackWaitMs ?? 30_000),
      max_ack_pending: 1,
      ...(backoff.length > 0 ? { backoff: backoff.map(nanos) } : {}),
    }
    try {
      await jsm.consumers.info(stream.name, durable)
      const { durable_name: _, deliver_policy: __, ...mutable } = config
      await jsm.consumers.update(stream.name, durable, mutable)
    } catch (error) {
      if (!/consumer not found/i.test((error as Error).message)) throw error
      await jsm.consumers.add(stream.name, config)
    }
  }

  protected async attach(): Promise<ConsumerMessages> {
    await this.setUp()
    const consumer = await this.options.bus
      .jetstream()
      .consumers.get(this.options.stream.name, this.options.durable)
    const messages = await consumer.consume({ max_messages: 1 })
    if (!this.announced) {
      this.log.info({ consumer: this.options.durable, subjects: this.subjects }, 'event consumer started')
      this.announced = true
    }
    return messages
  }

  protected receive(message: JsMsg): Promise<void> {
    return this.handle(message)
  }

  protected retrying(error: Error): void {
    this.log.warn({ consumer: this.options.durable, reason: error.message }, 'event consumer: retrying')
  }

  private async handle(message: JsMsg): Promise<void> {
    const consumer = this.options.durable
    this.metrics.pending.set({ consumer }, message.info.pending)
    let event: EventEnvelope
    try {
      event = parseEvent(message.data)
    } catch (error) {
      await this.deadLetter(message, error as Error)
      return
    }
    const handler = this.options.handlers[event.type] as EventHandler | undefined
    if (!handler) {
      message.ack()
      return
    }
    for (let attempt = 1; ; attempt++) {
      try {
        const applied = await tracedProcess(
          consumer,
          message.subject,
          message.headers,
          { messageId: event.id, deliveryCount: message.info.deliveryCount },
          () => this.apply(event, handler),
        )
        await message.ackAck().catch(() => {
          // Not confirmed: it will be redelivered and the inbox will say it is done.
        })
        this.metrics.consumed.inc({ consumer, outcome: applied ? 'applied' : 'duplicate' })
        this.metrics.lag.set({ consumer }, Math.max(0, (Date.now() - Date.parse(event.occurred_at)) / 1000))
        if (applied) this.options.onApplied?.(event)
        return
      } catch (error) {
        if (this.isTransient(error) && !this.stopped) {
          // Our database is down: not the event's fault. Keep it, keep the order, try again.
          message.working()
          if (attempt === 1 || attempt % 10 === 0)
            this.log.warn(
              { consumer, event_id: event.id, reason: (error as Error).message },
              'event consumer: database unavailable; retrying',
            )
          await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, 200 * attempt)))
          continue
        }
        this.metrics.consumed.inc({ consumer, outcome: 'failed' })
        if (message.info.deliveryCount >= this.maxDeliver) {
          await this.deadLetter(message, error as Error)
        } else {
          const delay =
            this.backoffMs[Math.min(message.info.deliveryCount - 1, this.backoffMs.length - 1)] ?? 1_000
          this.log.warn(
            {
              consumer,
              event_id: event.id,
              type: event.type,
              delivery: message.info.deliveryCount,
              reason: (error as Error).message,
            },
            'event handler failed; redelivering',
          )
          message.nak(delay)
        }
        return
      }
    }
  }

  /** Runs the handler and records the event in the inbox, in one transaction. False: already applied. */
  private async apply(event: EventEnvelope, handler: EventHandler): Promise<boolean> {
    return this.options.db.transaction().execute(async (trx) => {
      const inserted = await (trx as Transaction<InboxDatabase>)
        .insertInto('event_inbox')
        .values({ consumer: this.options.durable, event_id: event.id, subject: event.type })
        .onConflict((conflict) => conflict.columns(['consumer', 'event_id']).doNothing())
        .returning('event_id')
        .executeTakeFirst()
      if (!inserted) return false
      await handler(event, trx)
      return true
    })
  }

  private async deadLetter(message: JsMsg, error: Error): Promise<void> {
    const consumer = this.options.durable
    const headers = natsHeaders()
    for (const [key, values] of message.headers ?? []) for (const value of values) headers.append(key, value)
    headers.set('Nats-Msg-Id', `${consumer}:${message.info.streamSequence}`)
    headers.set(
      'Task-Manager-Dead-Letter-Reason',
      (error.message || error.name).replace(/[\r\n]/g, ' ').slice(0, 500),
    )
    headers.set('Task-Manager-Original-Subject', message.subject)
    headers.set('Task-Manager-Original-Sequence', String(message.info.streamSequence))
    headers.set('Task-Manager-Deliveries', String(message.info.deliveryCount))
    try {
      await this.options.bus.jetstream().publish(`deadletter.${consumer}.${message.subject}`, message.data, {
        headers,
        msgID: `${consumer}:${message.info.streamSequence}`,
        timeout: 5_000,
      })
    } catch (publishError) {
      // Could not park it: deliver again later rather than lose it.
      this.log.error({ consumer, reason: (publishError as Error).message }, 'dead-letter publish failed')
      message.nak(this.backoffMs.at(-1) ?? 30_000)
      return
    }
    message.term(error instanceof InvalidEvent ? `invalid event: ${error.message}` : error.message)
    this.metrics.consumed.inc({ consumer, outcome: 'dead_lettered' })
    this.log.error(
      { consumer, subject: message.subject, sequence: message.info.streamSequence, reason: error.message },
      'event moved to the dead-letter stream',
    )
  }
}
