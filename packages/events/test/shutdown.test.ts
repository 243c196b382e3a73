import { createServer } from 'node:net'
import { useTestDatabase } from '@task-manager/testing'
import Fastify from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Outbox, STREAMS, setUpServiceEvents } from '../src/index.js'
import { createSchema, open } from './fixtures/schema.js'

// A service whose NATS never answers (a name that does not resolve, a port nobody listens on) still
// starts and still shuts down at once: its relay, consumer and follower wait for the broker, but never
// past the app's close (a pod must drain in its grace period during a broker outage).
const database = useTestDatabase('events_shutdown')
let db: ReturnType<typeof open>

beforeAll(async () => {
  db = open(database.url)
  await createSchema(db.db)
})
afterAll(async () => {
  await db?.close()
})

/** A port with nothing behind it. */
async function deadPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

describe('shutdown while NATS is unreachable', () => {
  it.each([
    ['a port nobody listens on', async () => `nats://127.0.0.1:${await deadPort()}`],
    ['a host name that does not resolve', async () => 'nats://nats.invalid:4222'],
  ])('closes within 5 s with %s', async (_what, url) => {
    const app = Fastify({ logger: false })
    const outbox = new Outbox('test-service')
    const events = setUpServiceEvents(app, {
      service: 'test-service',
      config: { NATS_URL: await url(), EVENTS_STREAM_REPLICAS: 1, DATABASE_URL: database.url },
      db: db.db,
      publishes: { stream: STREAMS.projects, outbox },
      consumes: [{ stream: STREAMS.users, handlers: { 'users.user.deleted': async () => {} } }],
      revocations: { revoke: () => {} },
    })
    expect(events?.followers).toHaveLength(1)
    await app.ready()
    await new Promise((resolve) => setTimeout(resolve, 1_500)) // a few connection attempts
    const started = Date.now()
    await app.close()
    const took = Date.now() - started
    console.log(`closed in ${took} ms with NATS unreachable`)
    expect(took).toBeLessThan(5_000)
  })
})
