import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream'
import { Gauge, type Registry } from 'prom-client'
import { type EventBus, type Logger, silentLogger } from './bus.js'

/**
 * One set of a kind of subscription's metrics per registry (a service's), made the first time one of them
 * asks; without a registry, metrics of their own that nothing scrapes.
 */
export function metricsPerRegistry<T>(create: (registers: Registry[]) => T): (registry?: Registry) => T {
  const made = new WeakMap<Registry, T>()
  return (registry) => {
    if (!registry) return create([])
    let found = made.get(registry)
    if (!found) {
      found = create([registry])
      made.set(registry, found)
    }
    return found
  }
}

/**
 * A gauge read at each scrape from the started subscriptions in `running`: per `label` value, 1 when all of
 * them receive, 0 when one waits or retries; no series for a name with none started.
 */
export function receivingGauge<S extends Subscription>(options: {
  name: string
  help: string
  label: string
  registers: Registry[]
  running: ReadonlySet<S>
  labelOf: (subscription: S) => string
}): Gauge {
  const { running, labelOf, label } = options
  return new Gauge({
    name: options.name,
    help: options.help,
    labelNames: [label],
    registers: options.registers,
    collect() {
      this.reset()
      const receiving = new Map<string, boolean>()
      for (const subscription of running) {
        const key = labelOf(subscription)
        receiving.set(key, (receiving.get(key) ?? true) && subscription.receiving)
      }
      for (const [key, yes] of receiving) this.set({ [label]: key }, yes ? 1 : 0)
    },
  })
}

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
