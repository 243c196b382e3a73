import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream'
import { type EventBus, type Logger, silentLogger } from './bus.js'

/**
 * The life of a JetStream subscription, which a consumer and a follower share: `start()` runs it once;
 * it waits for the broker (never past `stop()`: a broker that never answers must not hold a shutdown),
 * attaches, takes each message in turn, and after any failure attaches again a second later until
 * `stop()`, which ends it at once.
 */
export abstract class Subscription {
  protected readonly log: Logger
  protected stopped = false
  private messages: ConsumerMessages | null = null
  private wakeOnStop: () => void = () => {}
  private readonly stopSignal = new Promise<void>((resolve) => {
    this.wakeOnStop = resolve
  })
  private loop: Promise<void> | null = null

  constructor(private readonly source: { bus: EventBus; log?: Logger }) {
    this.log = source.log ?? silentLogger
  }

  /** Attached with NATS connected: messages reach it (false while it waits, retries, or after stop()). */
  get receiving(): boolean {
    return !this.stopped && this.messages !== null && this.source.bus.connected
  }

  start(): this {
    this.loop ??= this.run()
    return this
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.wakeOnStop()
    await this.messages?.close().catch(() => {})
    await this.loop
  }

  /** Makes sure the stream (and consumer) exist and opens the flow of messages. */
  protected abstract attach(): Promise<ConsumerMessages>
  protected abstract receive(message: JsMsg): Promise<void> | void
  /** Attaching or the flow failed, not by stop(): the loop attaches again in a second. */
  protected abstract retrying(error: Error): void

  private async run(): Promise<void> {
    await Promise.race([this.source.bus.ready.catch(() => {}), this.stopSignal])
    while (!this.stopped) {
      try {
        this.messages = await this.attach()
        for await (const message of this.messages) {
          await this.receive(message)
          if (this.stopped) break
        }
      } catch (error) {
        if (this.stopped) break
        this.retrying(error as Error)
      }
      this.messages = null
      if (!this.stopped) await new Promise((resolve) => setTimeout(resolve, 1_000))
    }
  }
}
