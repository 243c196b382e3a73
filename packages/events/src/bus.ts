import {
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream'
import { connect, type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node'
import type { STREAMS } from './catalog.js'
import type { EventEnvelope } from './envelope.js'
import { tracedPublish } from './tracing.js'

export interface Logger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} }

export const nanos = (ms: number) => Math.round(ms * 1_000_000)

export interface EventBusOptions {
  /** One or more NATS URLs, comma-separated. */
  url: string
  /** Client name the server shows (/connz). */
  name: string
  /** Replicas of the streams this bus creates. */
  replicas?: number
  log?: Logger
}

/**
 * A NATS connection that is made in the background and re-made forever: a service never waits for the
 * broker to start or fails because it is down. `ready` resolves at the first connection; `connected`
 * says whether it is up now.
 */
export class EventBus {
  private nc: NatsConnection | null = null
  private closed = false
  private readonly log: Logger
  readonly ready: Promise<void>
  private managerPromise: Promise<JetStreamManager> | null = null
  private connectedNow = false

  constructor(private readonly options: EventBusOptions) {
    this.log = options.log ?? silentLogger
    this.ready = this.open()
    this.ready.catch(() => {})
  }

  private async open(): Promise<void> {
    for (let attempt = 1; !this.closed; attempt++) {
      try {
        const nc = await connect({
          servers: this.options.url.split(',').map((server) => server.trim()),
          name: this.options.name,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
          timeout: 2_000,
          pingInterval: 10_000,
        })
        if (this.closed) {
          await nc.close()
          return
        }
        this.nc = nc
        this.connectedNow = true
        this.log.info({ server: nc.getServer() }, 'connected to NATS')
        void this.watch(nc)
        return
      } catch (error) {
        if (attempt === 1 || attempt % 20 === 0)
          this.log.warn({ reason: (error as Error).message, attempt }, 'NATS not reachable yet; retrying')
        await new Promise((resolve) => setTimeout(resolve, Math.min(2_000, 100 * attempt)))
      }
    }
    throw new Error('event bus closed')
  }

  private async watch(nc: NatsConnection): Promise<void> {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') {
        this.connectedNow = false
        this.log.warn({}, 'NATS connection lost; reconnecting')
      } else if (status.type === 'reconnect') {
        this.connectedNow = true
        this.log.info({}, 'NATS connection restored')
      }
    }
  }

  get connected(): boolean {
    return this.nc !== null && this.connectedNow && !this.nc.isClosed()
  }

  /** The connection, once made (null before the first connection). */
  get connection(): NatsConnection | null {
    return this.nc
  }

  jetstream(): JetStreamClient {
    if (!this.nc) throw new Error('NATS is not connected yet')
    return jetstream(this.nc, { timeout: 5_000 })
  }

  async manager(): Promise<JetStreamManager> {
    await this.ready
    if (!this.nc) throw new Error('NATS is not connected')
    this.managerPromise ??= jetstreamManager(this.nc, { timeout: 5_000 })
    this.managerPromise.catch(() => {
      this.managerPromise = null
    })
    return this.managerPromise
  }

  /** Creates the stream when missing (file storage, kept by limits), or updates its replicas. */
  async ensureStream(stream: (typeof STREAMS)[keyof typeof STREAMS]): Promise<void> {
    const jsm = await this.manager()
    const config = {
      name: stream.name,
      subjects: [...stream.subjects],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      num_replicas: this.options.replicas ?? 1,
      // The broker drops a re-published event (same Nats-Msg-Id) within this window; consumers'
      // inboxes catch anything older.
      duplicate_window: nanos(10 * 60_000),
      max_age: 0,
    }
    try {
      await jsm.streams.info(stream.name)
      await jsm.streams.update(stream.name, { num_replicas: config.num_replicas, subjects: config.subjects })
    } catch (error) {
      if (!/stream not found/i.test((error as Error).message)) throw error
      try {
        await jsm.streams.add(config)
      } catch (addError) {
        // Another replica created it first.
        if (!/already in use/i.test((addError as Error).message)) throw addError
      }
    }
  }

  /**
   * Publishes one event (Nats-Msg-Id = event id; trace context headers, tracing.ts) and waits for the
   * broker's acknowledgement. Services publish through the outbox; this is for tools and tests.
   */
  async publish(event: EventEnvelope, timeoutMs = 5_000): Promise<void> {
    await this.ready
    const headers = natsHeaders()
    headers.set('Nats-Msg-Id', event.id)
    await tracedPublish(event, headers, () =>
      this.jetstream().publish(event.type, JSON.stringify(event), {
        msgID: event.id,
        headers,
        timeout: timeoutMs,
      }),
    )
  }

  async close(): Promise<void> {
    this.closed = true
    const nc = this.nc
    this.nc = null
    if (nc && !nc.isClosed()) await nc.drain().catch(() => nc.close())
  }
}
