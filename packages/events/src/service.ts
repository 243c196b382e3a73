import type { FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import type { Registry } from 'prom-client'
import { EventBus } from './bus.js'
import type { STREAMS } from './catalog.js'
import { EventConsumer, type EventHandlers } from './consumer.js'
import type { EventEnvelope } from './envelope.js'
import { EventFollower, type EventFollowerOptions } from './follow.js'
import type { Outbox } from './outbox.js'
import { OutboxRelay } from './relay.js'
import { tokenRevocationFollow } from './revocations.js'

type Stream = (typeof STREAMS)[keyof typeof STREAMS]

/** The kit's readiness (packages/service-kit), as far as this needs it. */
interface Readiness {
  addCheck(name: string, check: () => Promise<unknown>): void
}

/** How long a starting replica may stay unready while it replays the token revocations. */
export const REVOCATION_CATCH_UP_MS = 5_000

export interface ServiceEventsConfig {
  NATS_URL?: string
  EVENTS_STREAM_REPLICAS: number
  /** Only a publishing service needs it (default 250). */
  EVENTS_RELAY_POLL_MS?: number
  /** Only a consuming service needs it (default 6). */
  EVENTS_MAX_DELIVER?: number
  DATABASE_URL?: string
}

export interface ServiceEventsOptions {
  service: string
  config: ServiceEventsConfig
  /** The service's database (outbox and inbox). */
  db?: Kysely<any>
  /** The service's outbox and the stream it publishes to: a relay runs in this process. */
  publishes?: { stream: Stream; outbox: Outbox }
  /** Durable consumers (one per stream), shared by the service's replicas. */
  consumes?: { stream: Stream; handlers: EventHandlers; onApplied?: (event: EventEnvelope) => void }[]
  /** Per-process followers: each replica sees every one of these events. */
  follows?: Omit<EventFollowerOptions, 'bus' | 'log' | 'registry'>[]
  /**
   * The verifier's revocation list (packages/auth's TokenRevocations): this process follows
   * `users.user.tokens_revoked` and `users.user.deleted` into it (docs/events.md, "Token revocation").
   */
  revocations?: { revoke(userId: number, validAfter: number): void }
  /** Consumer settings for tests (short backoff). */
  backoffMs?: number[]
}

export interface ServiceEvents {
  bus: EventBus
  relay: OutboxRelay | null
  consumers: EventConsumer[]
  followers: EventFollower[]
}

/**
 * A service's events, wired the one way every service does it: the NATS connection (made in the
 * background, never blocking start-up or readiness), the outbox relay, durable consumers and
 * followers, all stopped when the app closes. Null without NATS_URL: then events stay in the outbox.
 */
export function setUpServiceEvents(
  app: FastifyInstance,
  options: ServiceEventsOptions,
): ServiceEvents | null {
  const { config, service } = options
  if (!config.NATS_URL) {
    const what = [
      options.publishes ? 'its events are kept in the outbox, not published' : '',
      options.consumes?.length || options.follows?.length ? 'it consumes no events' : '',
      options.revocations ? 'revoked tokens are accepted here until they expire' : '',
    ].filter(Boolean)
    app.log.warn({}, `NATS_URL is not set: ${what.join('; ')}`)
    return null
  }
  const registry = (app as FastifyInstance & { metrics?: { registry: Registry } }).metrics?.registry
  const log = app.log
  const bus = new EventBus({
    url: config.NATS_URL,
    name: service,
    replicas: config.EVENTS_STREAM_REPLICAS,
    log,
  })
  let relay: OutboxRelay | null = null
  if (options.publishes) {
    if (!options.db || !config.DATABASE_URL) throw new Error('a publishing service needs its database')
    const created = new OutboxRelay({
      db: options.db,
      connectionString: config.DATABASE_URL,
      bus,
      stream: options.publishes.stream,
      service,
      pollMs: config.EVENTS_RELAY_POLL_MS ?? 250,
      registry,
      log,
    })
    options.publishes.outbox.onCommitted(() => created.kick())
    relay = created
  }
  const consumers = (options.consumes ?? []).map((consumer) => {
    if (!options.db) throw new Error('a consuming service needs its database')
    return new EventConsumer({
      bus,
      db: options.db,
      stream: consumer.stream,
      durable: service,
      handlers: consumer.handlers,
      maxDeliver: config.EVENTS_MAX_DELIVER ?? 6,
      ...(options.backoffMs ? { backoffMs: options.backoffMs } : {}),
      registry,
      log,
      ...(consumer.onApplied ? { onApplied: consumer.onApplied } : {}),
    })
  })
  const follows = [
    ...(options.follows ?? []),
    ...(options.revocations ? [tokenRevocationFollow(options.revocations)] : []),
  ]
  const followers = follows.map((follow) => new EventFollower({ ...follow, bus, log, registry }))

  // A new replica takes no traffic before it knows the recent revocations (the replay of the last token
  // lifetime, milliseconds): otherwise a rolling restart would briefly accept revoked tokens. Bounded, so
  // a broker that is down at start never keeps the service unready (it then refuses what it learns later).
  let startedAt = Date.now()
  const revocationFollower = options.revocations ? followers.at(-1) : undefined
  const readiness = (app as FastifyInstance & { readiness?: Readiness }).readiness
  if (revocationFollower && readiness) {
    let caughtUp = false
    void revocationFollower.caughtUp.then(() => {
      caughtUp = true
    })
    readiness.addCheck('token-revocations', async () => {
      if (!caughtUp && Date.now() - startedAt < REVOCATION_CATCH_UP_MS)
        throw new Error('replaying token revocations')
    })
  }

  app.addHook('onReady', async () => {
    startedAt = Date.now()
    relay?.start()
    for (const consumer of consumers) consumer.start()
    for (const follower of followers) follower.start()
  })
  app.addHook('onClose', async () => {
    await Promise.all([
      relay?.stop(),
      ...consumers.map((consumer) => consumer.stop()),
      ...followers.map((follower) => follower.stop()),
    ])
    await bus.close()
  })
  return { bus, relay, consumers, followers }
}
