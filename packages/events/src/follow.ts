import { type ConsumerMessages, DeliverPolicy, type JsMsg } from '@nats-io/jetstream'
import { Counter, type Registry } from 'prom-client'
import type { EventBus, Logger } from './bus.js'
import type { EventType, STREAMS } from './catalog.js'
import { type EventEnvelope, parseEvent } from './envelope.js'
import { metricsPerRegistry, receivingGauge, Subscription } from './subscription.js'

export interface EventFollowerOptions {
  bus: EventBus
  /** What it follows for, the `follower` label of its metrics and logs (e.g. `token-revocations`). */
  name: string
  stream: (typeof STREAMS)[keyof typeof STREAMS]
  types: EventType[]
  /** Replays the events of this last stretch at start (e.g. an access token's lifetime). */
  replayMs: number
  onEvent: (event: EventEnvelope) => void
  registry?: Registry
  log?: Logger
}

const OUTCOMES = ['applied', 'ignored'] as const

function createMetrics(registers: Registry[]) {
  /** The started followers of this registry, read at each scrape. */
  const running = new Set<EventFollower>()
  return {
    running,
    connected: receivingGauge({
      name: 'events_follower_connected',
      help: '1 while this replica receives the events it follows (NATS connected, ordered consumer set up), 0 while it waits or retries',
      label: 'follower',
      registers,
      running,
      labelOf: (follower) => follower.name,
    }),
    followed: new Counter({
      name: 'events_followed_total',
      help: 'Events a follower received, by outcome (applied; ignored: not a valid event of its catalogue)',
      labelNames: ['follower', 'outcome'] as const,
      registers,
    }),
  }
}

const metricsFor = metricsPerRegistry(createMetrics)

/**
 * Every replica's own view of some events (an ordered, ephemeral consumer, not a shared durable one):
 * at start it replays the last `replayMs` of them, then follows new ones as they arrive, and resumes
 * where it was after a broker outage. For state every process must hold in memory (token revocations).
 */
export class EventFollower extends Subscription {
  private lastSequence = 0
  /** Resolves once the replay reached the end of the stream at start (or the first attempt failed). */
  readonly caughtUp: Promise<void>
  private markCaughtUp!: () => void
  private readonly metrics: ReturnType<typeof createMetrics>

  constructor(private readonly options: EventFollowerOptions) {
    super(options)
    this.caughtUp = new Promise((resolve) => {
      this.markCaughtUp = resolve
    })
    this.metrics = metricsFor(options.registry)
    // Every outcome from the start, so the first ignored event is an increase Prometheus can see.
    for (const outcome of OUTCOMES) this.metrics.followed.inc({ follower: options.name, outcome }, 0)
  }

  get name(): string {
    return this.options.name
  }

  override start(): this {
    this.metrics.running.add(this)
    return super.start()
  }

  override async stop(): Promise<void> {
    this.metrics.running.delete(this)
    this.markCaughtUp()
    await super.stop()
  }

  protected async attach(): Promise<ConsumerMessages> {
    const { bus, stream } = this.options
    await bus.ensureStream(stream)
    const since = new Date(Date.now() - this.options.replayMs).toISOString()
    const consumer = await bus.jetstream().consumers.get(stream.name, {
      filter_subjects: this.options.types,
      ...(this.lastSequence > 0
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.lastSequence + 1 }
        : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: since }),
    })
    const info = await consumer.info(true)
    if (info.num_pending === 0) this.markCaughtUp()
    return consumer.consume()
  }

  protected receive(message: JsMsg): void {
    this.lastSequence = message.info.streamSequence
    try {
      this.options.onEvent(parseEvent(message.data))
      this.metrics.followed.inc({ follower: this.options.name, outcome: 'applied' })
    } catch (error) {
      this.metrics.followed.inc({ follower: this.options.name, outcome: 'ignored' })
      this.log.warn(
        { follower: this.options.name, subject: message.subject, reason: (error as Error).message },
        'event ignored',
      )
    }
    if (message.info.pending === 0) this.markCaughtUp()
  }

  protected retrying(error: Error): void {
    this.markCaughtUp()
    this.log.warn({ follower: this.options.name, reason: error.message }, 'event follower: retrying')
  }
}
