import { type ConsumerMessages, DeliverPolicy, type JsMsg } from '@nats-io/jetstream'
import type { EventBus, Logger } from './bus.js'
import type { EventType, STREAMS } from './catalog.js'
import { type EventEnvelope, parseEvent } from './envelope.js'
import { Subscription } from './subscription.js'

export interface EventFollowerOptions {
  bus: EventBus
  stream: (typeof STREAMS)[keyof typeof STREAMS]
  types: EventType[]
  /** Replays the events of this last stretch at start (e.g. an access token's lifetime). */
  replayMs: number
  onEvent: (event: EventEnvelope) => void
  log?: Logger
}

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

  constructor(private readonly options: EventFollowerOptions) {
    super(options)
    this.caughtUp = new Promise((resolve) => {
      this.markCaughtUp = resolve
    })
  }

  override async stop(): Promise<void> {
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
    } catch (error) {
      this.log.warn({ subject: message.subject, reason: (error as Error).message }, 'event ignored')
    }
    if (message.info.pending === 0) this.markCaughtUp()
  }

  protected retrying(error: Error): void {
    this.markCaughtUp()
    this.log.warn({ reason: error.message }, 'event follower: retrying')
  }
}
