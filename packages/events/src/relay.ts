import { type Kysely, sql } from 'kysely'
import pg from 'pg'
import { Counter, Gauge, type Registry } from 'prom-client'
import { type EventBus, type Logger, silentLogger } from './bus.js'
import type { STREAMS } from './catalog.js'
import type { EventEnvelope } from './envelope.js'
import type { OutboxDatabase } from './tables.js'

/** How stale the backlog gauges may be while rows keep coming (each drain of a partial batch skips the count). */
const MEASURE_EVERY_MS = 1_000

export interface OutboxRelayOptions {
  /** The service's database (the one its outbox table is in). */
  db: Kysely<any>
  /** A URL of that database: the relay holds its leadership lock on a connection of its own. */
  connectionString: string
  bus: EventBus
  /** The stream the service publishes to (created when missing). */
  stream: (typeof STREAMS)[keyof typeof STREAMS]
  /** Names the lock and the metrics. */
  service: string
  /** How often to look for rows when nothing kicked the relay. Default 250 ms. */
  pollMs?: number
  /**
   * A kick that came while a drain ran waits this long before the next drain, so commits arriving under
   * load go out in one batch instead of one drain each. A kick while idle drains at once. Default 25 ms.
   */
  lingerMs?: number
  batchSize?: number
  /** Sent rows are deleted once older than this. Default 1 h. */
  keepSentMs?: number
  registry?: Registry
  log?: Logger
  /** Test hook: runs after an event was published and before its row is marked sent. */
  afterPublish?: (event: EventEnvelope) => void | Promise<void>
}

/**
 * Publishes the outbox to JetStream in batches read in id order, and keeps commit order per aggregate
 * (every change to an aggregate holds its row lock while it writes its events, so its outbox ids ascend in
 * commit order): within a batch one publish is in flight per aggregate (publishBatch), and an aggregate
 * whose publish failed publishes nothing more in that batch. Each event goes with `Nats-Msg-Id` = event id
 * so a re-publish after a crash is dropped by the broker; the acknowledged rows are marked sent in one
 * UPDATE. Kicks arriving during a drain are coalesced (lingerMs).
 *
 * One relay per service is active across replicas: the one holding a session-level PostgreSQL advisory
 * lock on its own connection. The others retry the lock every poll, so when the leader's process or
 * connection dies another takes over within a poll.
 */
export class OutboxRelay {
  private readonly log: Logger
  private readonly pollMs: number
  private readonly lingerMs: number
  private readonly batchSize: number
  private readonly lockKey: string
  private lockClient: pg.Client | null = null
  private stopped = false
  private loop: Promise<void> | null = null
  private wake: (() => void) | null = null
  private kicked = false
  private lastPurge = 0
  private lastMeasure = 0
  private streamReady = false
  private readonly published: Counter
  private readonly pending: Gauge
  private readonly oldest: Gauge
  private readonly leaderGauge: Gauge

  constructor(private readonly options: OutboxRelayOptions) {
    this.log = options.log ?? silentLogger
    this.pollMs = options.pollMs ?? 250
    this.lingerMs = options.lingerMs ?? 25
    this.batchSize = options.batchSize ?? 100
    this.lockKey = `task-manager outbox relay ${options.service}`
    const registers = options.registry ? [options.registry] : []
    this.published = new Counter({
      name: 'events_outbox_published_total',
      help: 'Events the outbox relay published to JetStream (duplicates the broker dropped included)',
      registers,
    })
    this.pending = new Gauge({
      name: 'events_outbox_pending',
      help: 'Outbox rows not yet published (as seen by the active relay)',
      registers,
    })
    this.oldest = new Gauge({
      name: 'events_outbox_oldest_pending_seconds',
      help: 'Age of the oldest unpublished outbox row (0 when none)',
      registers,
    })
    this.leaderGauge = new Gauge({
      name: 'events_relay_leader',
      help: '1 when this replica holds the relay lock and publishes the outbox',
      registers,
    })
  }

  get isLeader(): boolean {
    return this.lockClient !== null
  }

  start(): this {
    this.loop ??= this.run()
    return this
  }

  /** Publish now (after a commit in this process) instead of at the next poll. */
  kick(): void {
    this.kicked = true
    this.wake?.()
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.wake?.()
    await this.loop
    await this.releaseLock()
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let more = false
      try {
        if (!this.lockClient) await this.tryLead()
        if (this.lockClient && this.options.bus.connected) more = await this.drain()
        // The broker is away: nothing is published, but the backlog it leaves is what operators watch.
        else if (this.lockClient) await this.measure(this.options.db as Kysely<OutboxDatabase>, false)
      } catch (error) {
        this.log.warn({ reason: (error as Error).message }, 'outbox relay: publishing paused; retrying')
        if (this.lockClient && !(await this.lockAlive())) await this.releaseLock()
      }
      if (!more && !this.stopped) await this.sleep()
    }
  }

  private sleep(): Promise<void> {
    if (this.kicked) {
      // Kicked while the last drain ran: linger so the commits arriving meanwhile share the next batch.
      this.kicked = false
      return new Promise((resolve) => setTimeout(resolve, this.lingerMs))
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.pollMs)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.wake = () => {
        this.wake = null
        this.kicked = false
        done()
      }
    })
  }

  private async tryLead(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.options.connectionString,
      application_name: `${this.options.service}-outbox-relay`,
      connectionTimeoutMillis: 2_000,
    })
    client.on('error', () => {
      // The connection died: the lock is gone with it. run() notices at the next query.
    })
    try {
      await client.connect()
      const { rows } = await client.query<{ locked: boolean }>(
        'select pg_try_advisory_lock(hashtext($1)) as locked',
        [this.lockKey],
      )
      if (rows[0]?.locked) {
        this.lockClient = client
        this.leaderGauge.set(1)
        this.log.info({}, 'outbox relay: this replica publishes the outbox')
        return
      }
    } catch (error) {
      this.log.warn({ reason: (error as Error).message }, 'outbox relay: could not take the relay lock')
    }
    await client.end().catch(() => {})
  }

  private async lockAlive(): Promise<boolean> {
    try {
      await this.lockClient?.query('select 1')
      return true
    } catch {
      return false
    }
  }

  private async releaseLock(): Promise<void> {
    const client = this.lockClient
    this.lockClient = null
    this.leaderGauge.set(0)
    // Ending the session releases the advisory lock.
    await client?.end().catch(() => {})
  }

  /** Publishes one batch; true when a full batch went out (more may be waiting). */
  private async drain(): Promise<boolean> {
    if (!this.streamReady) {
      await this.options.bus.ensureStream(this.options.stream)
      this.streamReady = true
    }
    const db = this.options.db as Kysely<OutboxDatabase>
    const rows = await db
      .selectFrom('event_outbox')
      .select(['id', 'payload', 'created_at'])
      .where('sent_at', 'is', null)
      .orderBy('id')
      .limit(this.batchSize)
      .execute()
    const { sent, failed } = await this.publishBatch(rows)
    if (sent.length > 0)
      await db.updateTable('event_outbox').set({ sent_at: new Date() }).where('id', 'in', sent).execute()
    if (rows.length < this.batchSize && Date.now() - this.lastMeasure < MEASURE_EVERY_MS) {
      // This batch was the whole backlog when it was read, and it is sent: no count query on every commit's
      // kick (rows committed since are counted at the next measurement, within MEASURE_EVERY_MS).
      this.pending.set(0)
      this.oldest.set(0)
    } else await this.measure(db, true)
    if (Date.now() - this.lastPurge > 60_000) {
      this.lastPurge = Date.now()
      const before = new Date(Date.now() - (this.options.keepSentMs ?? 3_600_000))
      // sent_at ≥ created_at, so the created_at bound only lets the BRIN skip the recent pages.
      await db
        .deleteFrom('event_outbox')
        .where('created_at', '<', before)
        .where('sent_at', '<', before)
        .execute()
    }
    // After a failed publish the next attempt waits for a poll (or a kick), as when the broker is away.
    return rows.length === this.batchSize && !failed
  }

  /**
   * Publishes a batch with one publish in flight per aggregate: an aggregate's events go out one after
   * another in id order (its later event waits for the broker's ack of its earlier one), different
   * aggregates' concurrently. When an aggregate's publish fails, none of its later events in the batch is
   * published (they stay unsent and go out, in order, with a later batch); the others carry on. Returns the
   * ids of the rows whose publish was acknowledged; the first failure is logged.
   */
  private async publishBatch(
    rows: { id: number; payload: EventEnvelope }[],
  ): Promise<{ sent: number[]; failed: boolean }> {
    const byAggregate = new Map<string, { id: number; payload: EventEnvelope }[]>()
    for (const row of rows) {
      const key = `${row.payload.aggregate_type}\u0000${row.payload.aggregate_id}`
      const queue = byAggregate.get(key)
      if (queue) queue.push(row)
      else byAggregate.set(key, [row])
    }
    const sent: number[] = []
    let failure: Error | null = null
    await Promise.all(
      [...byAggregate.values()].map(async (queue) => {
        for (const row of queue) {
          try {
            await this.options.bus.publish(row.payload)
            this.published.inc()
            await this.options.afterPublish?.(row.payload)
          } catch (error) {
            failure ??= error as Error
            return
          }
          sent.push(row.id)
        }
      }),
    )
    if (failure)
      this.log.warn(
        { reason: (failure as Error).message, sent: sent.length, of: rows.length },
        'outbox relay: a publish failed; that aggregate waits for the next batch',
      )
    return { sent, failed: failure !== null }
  }

  /** Counts the backlog for the gauges; unless `force`, at most once per MEASURE_EVERY_MS. */
  private async measure(db: Kysely<OutboxDatabase>, force: boolean): Promise<void> {
    if (!force && Date.now() - this.lastMeasure < MEASURE_EVERY_MS) return
    this.lastMeasure = Date.now()
    const { count, oldest } = await db
      .selectFrom('event_outbox')
      .select([(eb) => eb.fn.countAll<number>().as('count'), sql<Date | null>`min(created_at)`.as('oldest')])
      .where('sent_at', 'is', null)
      .executeTakeFirstOrThrow()
    this.pending.set(Number(count))
    this.oldest.set(oldest ? Math.max(0, (Date.now() - new Date(oldest).getTime()) / 1000) : 0)
  }
}
