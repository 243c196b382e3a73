import { jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { useNatsServer } from '@task-manager/testing'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import { EventBus, EventFollower, newEvent, STREAMS, tokenRevocationFollow } from '../src/index.js'

const nats = useNatsServer()
const cleanups: (() => Promise<unknown>)[] = []

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.()
  const nc = await connect({ servers: nats.url })
  const jsm = await jetstreamManager(nc)
  for await (const stream of jsm.streams.list()) await jsm.streams.delete(stream.config.name)
  await nc.close()
})

function bus(name: string) {
  const created = new EventBus({ url: nats.url, name })
  cleanups.push(() => created.close())
  return created
}

/** One metric's samples as Prometheus would scrape them, by their labels. */
async function samples(registry: Registry, name: string) {
  const metric = (await registry.getMetricsAsJSON()).find((found) => found.name === name)
  return (metric?.values ?? []).map(({ labels, value }) => ({ labels, value }))
}

async function until(check: () => Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

describe('EventFollower metrics', () => {
  it('shows whether each follower receives, and counts what it applied and ignored', async () => {
    const registry = new Registry()
    const revoked: [number, number][] = []
    const follower = new EventFollower({
      ...tokenRevocationFollow({ revoke: (userId, validAfter) => revoked.push([userId, validAfter]) }),
      bus: bus('follower'),
      registry,
    })
    // Before it is started, no replica of it exists: no series.
    expect(await samples(registry, 'events_follower_connected')).toEqual([])
    // The outcomes exist from the start, at 0, so a first increase is visible.
    expect(await samples(registry, 'events_followed_total')).toEqual([
      { labels: { follower: 'token-revocations', outcome: 'applied' }, value: 0 },
      { labels: { follower: 'token-revocations', outcome: 'ignored' }, value: 0 },
    ])

    follower.start()
    cleanups.push(() => follower.stop())
    await follower.caughtUp
    await until(async () => (await samples(registry, 'events_follower_connected'))[0]?.value === 1)
    expect(await samples(registry, 'events_follower_connected')).toEqual([
      { labels: { follower: 'token-revocations' }, value: 1 },
    ])

    const publisher = bus('publisher')
    await publisher.ensureStream(STREAMS.users)
    await publisher.publish(
      newEvent('users.user.deleted', { user_id: 7, valid_after: 1_000 }, { producer: 'user-service' }),
    )
    // A message on a followed subject that is not a valid event: ignored, counted, and the follower goes on.
    await publisher.jetstream().publish('users.user.deleted', '{"not":"an event"}')
    await publisher.publish(
      newEvent(
        'users.user.tokens_revoked',
        { user_id: 8, valid_after: 2_000, reason: 'logout' },
        { producer: 'user-service' },
      ),
    )
    await until(async () => revoked.length === 2)
    expect(revoked).toEqual([
      [7, 1_000],
      [8, 2_000],
    ])
    await until(async () => {
      const followed = await samples(registry, 'events_followed_total')
      return followed.find((sample) => sample.labels.outcome === 'ignored')?.value === 1
    })
    expect(await samples(registry, 'events_followed_total')).toEqual([
      { labels: { follower: 'token-revocations', outcome: 'applied' }, value: 2 },
      { labels: { follower: 'token-revocations', outcome: 'ignored' }, value: 1 },
    ])

    // The broker goes away: the follower is no longer receiving, and says so.
    await nats.server.stop()
    try {
      await until(async () => (await samples(registry, 'events_follower_connected'))[0]?.value === 0)
    } finally {
      await nats.server.restart()
    }
    // It comes back by itself once the broker is back.
    await until(async () => (await samples(registry, 'events_follower_connected'))[0]?.value === 1, 30_000)

    // Stopped: the series goes with it.
    await follower.stop()
    expect(await samples(registry, 'events_follower_connected')).toEqual([])
  }, 60_000)
})
