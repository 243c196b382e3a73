import { jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { spawnEntry, useNatsServer, useTestDatabase } from '@task-manager/testing'
import { type QueryCreator, sql } from 'kysely'
import { Registry } from 'prom-client'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  EventBus,
  EventConsumer,
  type EventEnvelope,
  newEvent,
  OutboxRelay,
  recordEvents,
  recordEventsWith,
  STREAMS,
} from '../src/index.js'
import { createSchema, open } from './fixtures/schema.js'

const database = useTestDatabase('events')
const nats = useNatsServer()
let handle: ReturnType<typeof open>
const cleanups: (() => Promise<unknown>)[] = []

beforeAll(async () => {
  handle = open(database.url)
  await createSchema(handle.db)
})
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.()
  await sql`truncate event_outbox, event_inbox, effects`.execute(handle.db)
  const nc = await connect({ servers: nats.url })
  const jsm = await jetstreamManager(nc)
  for await (const stream of jsm.streams.list()) await jsm.streams.delete(stream.config.name)
  await nc.close()
})
afterAll(async () => {
  await handle.close()
})

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'

function bus(name = 'test') {
  const created = new EventBus({ url: nats.url, name })
  cleanups.push(() => created.close())
  return created
}

function relay(options: Partial<ConstructorParameters<typeof OutboxRelay>[0]> = {}) {
  const created = new OutboxRelay({
    db: handle.db,
    connectionString: database.url,
    bus: options.bus ?? bus('relay'),
    stream: STREAMS.projects,
    service: 'test-service',
    pollMs: 50,
    ...options,
  }).start()
  cleanups.push(() => created.stop())
  return created
}

function consumer(options: Partial<ConstructorParameters<typeof EventConsumer>[0]> = {}) {
  const created = new EventConsumer({
    bus: bus('consumer'),
    db: handle.db,
    stream: STREAMS.projects,
    durable: 'effects',
    backoffMs: [50, 100],
    maxDeliver: 3,
    handlers: {
      'projects.project.deleted': async (event, trx) => {
        await trx
          .insertInto('effects')
          .values({ event_id: event.id, project_id: event.data.project_id })
          .execute()
      },
    },
    ...options,
  }).start()
  cleanups.push(() => created.stop())
  return created
}

/** Writes events the way a service does: a change and its events in one transaction. */
async function write(projectIds: number[]): Promise<EventEnvelope[]> {
  const events = projectIds.map((id) =>
    newEvent(
      'projects.project.deleted',
      { project_id: id, reason: 'deleted' },
      { producer: 'test', traceparent: TRACEPARENT },
    ),
  )
  await handle.db.transaction().execute((trx) => recordEvents(trx, events))
  return events
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function streamMessages(name = 'PROJECTS'): Promise<number> {
  const nc = await connect({ servers: nats.url })
  try {
    const jsm = await jetstreamManager(nc)
    return (await jsm.streams.info(name)).state.messages
  } catch {
    return 0
  } finally {
    await nc.close()
  }
}

async function unsent(): Promise<number> {
  const row = await handle.db
    .selectFrom('event_outbox')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('sent_at', 'is', null)
    .executeTakeFirstOrThrow()
  return Number(row.n)
}

async function effectsPerEvent(): Promise<Map<string, number>> {
  const rows = await handle.db
    .selectFrom('effects')
    .select(['event_id', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy('event_id')
    .execute()
  return new Map(rows.map((row) => [row.event_id as string, Number(row.n)]))
}

const projectOf = (event: EventEnvelope) => (event.data as { project_id: number }).project_id

describe('outbox', () => {
  const deleted = (projectId: number, id?: string) => ({
    ...newEvent(
      'projects.project.deleted',
      { project_id: projectId, reason: 'deleted' },
      { producer: 'test' },
    ),
    ...(id === undefined ? {} : { id }),
  })
  const effect = (projectId: number) => (db: QueryCreator<any>) =>
    db.insertInto('effects').values({ event_id: crypto.randomUUID(), project_id: projectId })
  const outboxRows = async () =>
    (await handle.db.selectFrom('event_outbox').select(['event_id', 'payload']).orderBy('id').execute()).map(
      (row) => [row.event_id, row.payload.data.project_id],
    )
  const effects = async () =>
    (await handle.db.selectFrom('effects').select('project_id').execute()).map((row) => row.project_id)

  it('writes a change and its events in one statement: both or neither, even outside a transaction', async () => {
    const event = deleted(1)
    await recordEventsWith(handle.db, effect(1), [event, deleted(1)])
    expect(await effects()).toEqual([1])
    expect((await outboxRows()).map(([id]) => id)).toContain(event.id)
    expect(await outboxRows()).toHaveLength(2)
    // An event the outbox refuses (its id is no uuid) takes the change with it: one statement, not two.
    await expect(recordEventsWith(handle.db, effect(2), [deleted(2, 'not-a-uuid')])).rejects.toThrow(/uuid/)
    expect(await effects()).toEqual([1])
    expect(await outboxRows()).toHaveLength(2)
  })

  it('without events runs only the change', async () => {
    await recordEventsWith(handle.db, effect(3), [])
    expect(await effects()).toEqual([3])
    expect(await outboxRows()).toEqual([])
  })
})

describe('outbox relay', () => {
  it('publishes committed events in order, with the event id as Nats-Msg-Id and the traceparent as a header, and marks them sent', async () => {
    const events = await write([1, 2, 3, 4, 5])
    relay()
    await until('outbox drained', async () => (await unsent()) === 0)
    const nc = await connect({ servers: nats.url })
    cleanups.push(() => nc.close())
    const { jetstream } = await import('@nats-io/jetstream')
    const js = jetstream(nc)
    const ordered = await js.consumers.get('PROJECTS')
    const received: { id: string; msgId?: string; traceparent?: string }[] = []
    for (let i = 0; i < 5; i++) {
      const message = await ordered.next({ expires: 5_000 })
      if (!message) break
      received.push({
        id: (message.json() as EventEnvelope).id,
        msgId: message.headers?.get('Nats-Msg-Id'),
        traceparent: message.headers?.get('traceparent'),
      })
    }
    expect(received.map((r) => r.id)).toEqual(events.map((e) => e.id))
    expect(received.every((r) => r.msgId === r.id && r.traceparent === TRACEPARENT)).toBe(true)
  })

  it('deletes rows sent longer ago than keepSentMs, and keeps a row created long ago but sent just now', async () => {
    const [old] = await write([1])
    const first = relay({ keepSentMs: 200 })
    await until('the first row sent', async () => (await unsent()) === 0)
    await first.stop()
    await new Promise((resolve) => setTimeout(resolve, 300))
    // Written an hour ago (the broker was away, say) and not sent yet.
    const [late] = await write([2])
    await sql`update event_outbox set created_at = now() - interval '1 hour' where sent_at is null`.execute(
      handle.db,
    )
    // A new relay purges at its first drain, after publishing.
    relay({ keepSentMs: 200 })
    await until('the old row sent', async () => (await unsent()) === 0)
    await until('the row sent long ago purged', async () => {
      const ids = (await handle.db.selectFrom('event_outbox').select('event_id').execute()).map(
        (row) => row.event_id,
      )
      return ids.length === 1 && ids[0] === late?.id
    })
    expect(old?.id).not.toBe(late?.id)
  })

  it('never fails or slows a write while the broker is down; the outbox drains when it is back, every event once', async () => {
    const registry = new Registry()
    const pendingGauge = async () =>
      Number((await registry.metrics()).match(/^events_outbox_pending (\d+)$/m)?.[1] ?? Number.NaN)
    relay({ registry })
    consumer()
    await write([1])
    await until('first event applied', async () => (await effectsPerEvent()).size === 1)
    await nats.server.stop()
    const started = Date.now()
    const written: EventEnvelope[] = []
    for (let i = 0; i < 20; i++) written.push(...(await write([100 + i])))
    const elapsed = Date.now() - started
    // 20 transactions on a busy machine: far below one publish timeout (5 s), which they never wait for.
    expect(elapsed).toBeLessThan(3_000)
    expect(await unsent()).toBe(20)
    // What operators watch (the backlog alert): the relay counts the backlog while it cannot publish.
    await until('the backlog on /metrics', async () => (await pendingGauge()) === 20)
    await nats.server.restart()
    await until('outbox drained', async () => (await unsent()) === 0, 30_000)
    await until('the backlog gone from /metrics', async () => (await pendingGauge()) === 0)
    const effects = await until(
      'every event applied',
      async () => {
        const map = await effectsPerEvent()
        return map.size === 21 ? map : undefined
      },
      30_000,
    )
    expect([...effects.values()].every((n) => n === 1)).toBe(true)
    expect(written.every((event) => effects.has(event.id))).toBe(true)
  })

  it('a relay killed between publishing and marking sent: the next one re-publishes, the broker drops the duplicates', async () => {
    // One aggregate's events: published one after another, so the kill comes between the 3rd and the 4th.
    await write([1, 1, 1, 1])
    let published = 0
    const doomed = relay({
      afterPublish: async () => {
        published++
        if (published === 3) throw new Error('killed before marking sent')
      },
    })
    await until('three published', async () => published >= 3)
    await doomed.stop()
    // Rows 1–2 were marked; row 3 was published but not marked; row 4 not published.
    expect(await unsent()).toBe(2)
    expect(await streamMessages()).toBe(3)
    relay()
    await until('outbox drained', async () => (await unsent()) === 0)
    expect(await streamMessages()).toBe(4)
    consumer()
    const effects = await until('applied', async () => {
      const map = await effectsPerEvent()
      return map.size === 4 ? map : undefined
    })
    expect([...effects.values()]).toEqual([1, 1, 1, 1])
  })

  it('a publish failing mid-batch for one aggregate: its later events wait, unsent and unpublished, while other aggregates go out; after recovery the stream holds its events in order, each once', async () => {
    // Project 1's second event fails to publish until `broken` is cleared; projects 2 and 3 are unaffected.
    const events = await write([1, 2, 1, 3, 1, 2, 1])
    const ofProject1 = events.filter((event) => projectOf(event) === 1)
    const failing = ofProject1[1]?.id
    let broken = true
    let failures = 0
    class FaultyBus extends EventBus {
      override async publish(event: EventEnvelope, timeoutMs?: number): Promise<void> {
        if (broken && event.id === failing) {
          failures++
          throw new Error('publish failed')
        }
        await super.publish(event, timeoutMs)
      }
    }
    const faulty = new FaultyBus({ url: nats.url, name: 'relay' })
    cleanups.push(() => faulty.close())
    relay({ bus: faulty })
    await until('the other aggregates sent', async () => (await unsent()) === 3)
    await until('a retry failed too', async () => failures >= 2)
    const unsentIds = await handle.db
      .selectFrom('event_outbox')
      .select('event_id')
      .where('sent_at', 'is', null)
      .orderBy('id')
      .execute()
    expect(unsentIds.map((row) => row.event_id)).toEqual(ofProject1.slice(1).map((event) => event.id))
    // In the stream: every event but project 1's failed one and those after it.
    expect(await streamMessages()).toBe(4)
    broken = false
    await until('outbox drained', async () => (await unsent()) === 0)
    expect(await streamMessages()).toBe(7)
    const nc = await connect({ servers: nats.url })
    cleanups.push(() => nc.close())
    const { jetstream } = await import('@nats-io/jetstream')
    const ordered = await jetstream(nc).consumers.get('PROJECTS')
    const received: EventEnvelope[] = []
    for (let i = 0; i < 7; i++) {
      const message = await ordered.next({ expires: 5_000 })
      if (message) received.push(message.json() as EventEnvelope)
    }
    expect(received.filter((event) => projectOf(event) === 1).map((event) => event.id)).toEqual(
      ofProject1.map((event) => event.id),
    )
    expect(new Set(received.map((event) => event.id))).toEqual(new Set(events.map((event) => event.id)))
  })

  it('of two replicas only one relays; when it stops the other takes over', async () => {
    const first = relay()
    await until('a leader', async () => first.isLeader)
    const second = relay()
    await write([1, 2])
    await until('drained', async () => (await unsent()) === 0)
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(first.isLeader).toBe(true)
    expect(second.isLeader).toBe(false)
    await first.stop()
    await until('the other leads', async () => second.isLeader)
    await write([3])
    await until('drained', async () => (await unsent()) === 0)
    expect(await streamMessages()).toBe(3)
  })
})

describe('event consumer', () => {
  it('applies a redelivered or re-published event once (the inbox), and acknowledges it', async () => {
    const [event] = await write([7])
    relay()
    consumer()
    await until('applied', async () => (await effectsPerEvent()).size === 1)
    // The same event again under another message id: past the broker's dedupe, caught by the inbox.
    const nc = await connect({ servers: nats.url })
    cleanups.push(() => nc.close())
    const { jetstream } = await import('@nats-io/jetstream')
    await jetstream(nc).publish('projects.project.deleted', JSON.stringify(event), { msgID: 'another-id' })
    await write([8])
    await until('next applied', async () => (await effectsPerEvent()).size === 2)
    expect((await effectsPerEvent()).get(event?.id as string)).toBe(1)
  })

  it('moves a poison event to the dead-letter stream after its deliveries and goes on with the next', async () => {
    relay()
    let failures = 0
    consumer({
      handlers: {
        'projects.project.deleted': async (event, trx) => {
          if (event.data.project_id === 666) {
            failures++
            throw new Error('cannot handle project 666')
          }
          await trx
            .insertInto('effects')
            .values({ event_id: event.id, project_id: event.data.project_id })
            .execute()
        },
      },
    })
    const nc = await connect({ servers: nats.url })
    cleanups.push(() => nc.close())
    const { jetstream } = await import('@nats-io/jetstream')
    await write([1])
    await until('first applied', async () => (await effectsPerEvent()).size === 1)
    // Not even an event: dead-lettered at once.
    await jetstream(nc).publish('projects.project.deleted', 'not json')
    await write([666, 2])
    await until('event behind the poison applied', async () => (await effectsPerEvent()).size === 2)
    expect(failures).toBe(3)
    const jsm = await jetstreamManager(nc)
    expect((await jsm.streams.info('DEADLETTER')).state.messages).toBe(2)
    const dead = await jetstream(nc).consumers.get('DEADLETTER')
    const subjects: string[] = []
    for (let i = 0; i < 2; i++) {
      const message = await dead.next({ expires: 5_000 })
      if (message) subjects.push(`${message.subject} ${message.headers?.get('Task-Manager-Deliveries')}`)
    }
    expect(subjects).toEqual([
      'deadletter.effects.projects.project.deleted 1',
      'deadletter.effects.projects.project.deleted 3',
    ])
    // The inbox holds no trace of the failed event: its transaction rolled back each time.
    const inbox = await handle.db.selectFrom('event_inbox').select('event_id').execute()
    expect(inbox).toHaveLength(2)
  })

  it('says on /metrics whether it receives (0 while NATS is down) and counts every outcome from 0', async () => {
    const registry = new Registry()
    const sample = async (series: string) => {
      const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${series} `))
      return line === undefined ? undefined : Number(line.slice(series.length + 1))
    }
    const connected = 'events_consumer_connected{consumer="effects"}'
    const created = consumer({ registry })
    // Before any event: each outcome already at 0, so the first dead-lettered one is an increase.
    for (const outcome of ['applied', 'duplicate', 'failed', 'dead_lettered'])
      expect(await sample(`events_consumed_total{consumer="effects",outcome="${outcome}"}`)).toBe(0)
    await until('receiving', async () => (await sample(connected)) === 1)
    await nats.server.stop()
    await until('not receiving while NATS is down', async () => (await sample(connected)) === 0)
    await nats.server.restart()
    await until('receiving again', async () => (await sample(connected)) === 1, 30_000)
    relay()
    await write([5])
    await until('applied', async () => (await effectsPerEvent()).size === 1)
    expect(await sample('events_consumed_total{consumer="effects",outcome="applied"}')).toBe(1)
    await created.stop()
    expect(await sample(connected)).toBeUndefined()
  })

  it('a consumer process killed mid-batch: its replacement finishes, no effect applied twice', async () => {
    const events = await write(Array.from({ length: 40 }, (_, i) => i + 1))
    relay()
    const child = spawnEntry(new URL('./fixtures/consumer-process.ts', import.meta.url).pathname, {
      DATABASE_URL: database.url,
      NATS_URL: nats.url,
    })
    cleanups.push(async () => {
      if (child.child.exitCode === null) child.child.kill('SIGKILL')
    })
    await until('some applied', async () => (await effectsPerEvent()).size >= 10, 30_000)
    child.child.kill('SIGKILL')
    await child.exited
    const before = (await effectsPerEvent()).size
    expect(before).toBeLessThan(40)
    // A short ack wait so the event in flight in the killed process comes back soon.
    consumer({ ackWaitMs: 1_000 })
    const effects = await until(
      'all applied',
      async () => {
        const map = await effectsPerEvent()
        return map.size === 40 ? map : undefined
      },
      30_000,
    )
    expect([...effects.values()].every((n) => n === 1)).toBe(true)
    expect(events.every((event) => effects.has(event.id))).toBe(true)
  })
})
