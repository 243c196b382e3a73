import type { ConsumerMessages } from '@nats-io/jetstream'
import { DeliverPolicy } from '@nats-io/jetstream'
import { type EventBus, type Logger, silentLogger } from './bus.js'
import type { EventType, STREAMS } from './catalog.js'
import { type EventEnvelope, parseEvent } from './envelope.js'

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
export class EventFollower {
  private readonly log: Logger
  private messages: ConsumerMessages | null = null
  private stopped = false
  private wakeOnStop: () => void = () => {}
  private readonly stopSignal = new Promise<void>((resolve) => {
    this.wakeOnStop = resolve
  })
  private loop: Promise<void> | null = null
  private lastSequence = 0
  /** Resolves once the replay reached the end of the stream at start (or the first attempt failed). */
  readonly caughtUp: Promise<void>
  private markCaughtUp!: () => void

  constructor(private readonly options: EventFollowerOptions) {
    this.log = options.log ?? silentLogger
    this.caughtUp = new Promise((resolve) => {
      this.markCaughtUp = resolve
    })
  }

  start(): this {
    this.loop ??= this.run()
    return this
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.wakeOnStop()
    this.markCaughtUp()
    await this.messages?.close().catch(() => {})
    await this.loop
  }

  private async run(): Promise<void> {
    // Not past stop(): a broker that never answers must not hold a shutdown.
    await Promise.race([this.options.bus.ready.catch(() => {}), this.stopSignal])
    while (!this.stopped) {
      try {
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
        this.messages = await consumer.consume()
        for await (const message of this.messages) {
          this.lastSequence = message.info.streamSequence
          try {
            this.options.onEvent(parseEvent(message.data))
          } catch (error) {
            this.log.warn({ subject: message.subject, reason: (error as Error).message }, 'event ignored')
          }
          if (message.info.pending === 0) this.markCaughtUp()
        }
      } catch (error) {
        if (this.stopped) break
        this.markCaughtUp()
        this.log.warn({ reason: (error as Error).message }, 'event follower: retrying')
      }
      this.messages = null
      if (!this.stopped) await new Promise((resolve) => setTimeout(resolve, 1_000))
    }
  }
}
