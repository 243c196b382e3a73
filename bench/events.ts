// Domain events: what the transactional outbox costs a create, and how long an event takes from its
// producer's commit to its effect committed in a consumer.
//   node --conditions=@task-manager/source --import tsx bench/events.ts [--smoke]   (bench/run.sh runs it)
// Starts its own embedded PostgreSQL (a project-service database and a task-service database, each
// migrated by the service's own migrations) and a real nats-server. This process, and with it the
// servers it starts, is pinned to one CPU (BENCH_SERVER_CPU, default 0) with taskset.
// - Outbox cost: the project-service's real create (ProjectRepository.create: the project and its owner
//   membership in one transaction, with `projects.member.added` through Outbox.record) at concurrency
//   8, against the same create with an outbox that neither builds nor writes the event and no relay. With
//   the outbox, an OutboxRelay publishes to JetStream during the run, which ends once every row is sent.
//   CPU per create: this process (process.cpuUsage: the creates, the relay), PostgreSQL (the postmaster
//   and its backends, from /proc), nats-server. Warm-up, then both variants twice, interleaved.
// - Latency: creates at a fixed rate (open loop), consumed by a durable EventConsumer applying the
//   task-service's real membership handler (an upsert) with its inbox; latency is from the producer's
//   COMMIT returning to the consumer's transaction committing (performance.now(), one process).
// Every loop is bounded in count or time. Prints one JSON document on stdout (progress on stderr).
import { setTimeout as sleep } from 'node:timers/promises'
import {
  type ChangeQuery,
  EventBus,
  EventConsumer,
  type EventData,
  type EventEnvelope,
  type EventHandler,
  type EventType,
  Outbox,
  OutboxRelay,
  STREAMS,
} from '@task-manager/events'
import { createDatabase, migrateToLatest } from '@task-manager/service-kit'
import { startEmbeddedPostgres, startTestNats } from '@task-manager/testing'
import type { Kysely, QueryCreator, Transaction } from 'kysely'
import { migrations as projectMigrations } from '../services/project-service/src/db/migrations/index.js'
import type { ProjectDatabase } from '../services/project-service/src/db/schema.js'
import { ProjectRepository } from '../services/project-service/src/projects/repository.js'
import { migrations as taskMigrations } from '../services/task-service/src/db/migrations/index.js'
import type { TaskDatabase } from '../services/task-service/src/db/schema.js'
import { projectEventHandlers } from '../services/task-service/src/events/handlers.js'
import { cpuSeconds, pinRunning, postmasterPid } from './proc.js'

const smoke = process.argv.includes('--smoke')
const CREATES = smoke ? 300 : Number(process.env.BENCH_EVENTS_CREATES ?? 4000)
const WARMUP_CREATES = smoke ? 100 : 1000
const CONCURRENCY = Number(process.env.BENCH_EVENTS_CONCURRENCY ?? 8)
/** The project-service's default DATABASE_POOL_MAX: the creates and the relay share it. */
const POOL_MAX = 10
const RATE = Number(process.env.BENCH_EVENTS_RATE ?? 200)
const EVENTS = smoke ? 200 : Number(process.env.BENCH_EVENTS_LATENCY_EVENTS ?? 3000)
const WARMUP_EVENTS = smoke ? 50 : RATE
const ROUNDS = 2
const CPU = process.env.BENCH_SERVER_CPU ?? '0'
const TARGET_PERCENT = 15
const log = (line: string) => process.stderr.write(`[events] ${line}\n`)
const loud = (line: string) => process.stderr.write(`\n[events] !!! ${line}\n\n`)

// Pinned before anything starts: PostgreSQL and nats-server inherit it (and are pinned again below).
const pinned = pinRunning(process.pid, CPU)
if (!pinned) loud('taskset is missing (apt-get install util-linux): this benchmark runs unpinned')

async function until(what: string, probe: () => Promise<boolean> | boolean, everyMs = 5) {
  const deadline = Date.now() + 60_000
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(everyMs)
  }
}

const pgServer = await startEmbeddedPostgres()
const postmaster = postmasterPid(pgServer.clusterDir)
const nats = await startTestNats()
const natsPid = nats.child.pid as number
if (pinned) {
  pinRunning(postmaster, CPU)
  pinRunning(natsPid, CPU)
}
const admin = createDatabase({ connectionString: pgServer.adminUrl, max: 1 }).pool
const suffix = Date.now()
const dbUrl = async (name: string) => {
  await admin.query(`create database ${name}`)
  const url = new URL(pgServer.adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}
const projectsUrl = await dbUrl(`bench_events_projects_${suffix}`)
const tasksUrl = await dbUrl(`bench_events_tasks_${suffix}`)
const projects = createDatabase<ProjectDatabase>({
  connectionString: projectsUrl,
  max: POOL_MAX,
  applicationName: 'project-service',
})
await migrateToLatest(projects.db, projectMigrations)
const tasks = createDatabase<TaskDatabase>({
  connectionString: tasksUrl,
  max: POOL_MAX,
  applicationName: 'task-service',
})
await migrateToLatest(tasks.db, taskMigrations)
// Two connections, as two services have: the producer's (relay) and the consumer's.
const producerBus = new EventBus({ url: nats.url, name: 'project-service' })
const consumerBus = new EventBus({ url: nats.url, name: 'task-service' })
await producerBus.ensureStream(STREAMS.projects)
const jsm = await producerBus.manager()

/** The same create with no event: nothing is built, nothing written, no relay to wake. */
class NoOutbox extends Outbox {
  override event<T extends EventType>(type: T, data: EventData<T>): EventEnvelope<T> {
    return { type, data } as EventEnvelope<T>
  }
  override async record(): Promise<void> {}
  override recordWith<DB>(
    trx: Transaction<DB> | Kysely<DB>,
    change: (db: QueryCreator<DB>) => ChangeQuery,
  ): Promise<void> {
    return super.recordWith(trx, change, [])
  }
  override committed(): void {}
}

/** The project-service's relay, woken by its outbox's commits as setUpServiceEvents wires it. */
async function startRelay(outbox: Outbox): Promise<OutboxRelay> {
  const relay = new OutboxRelay({
    db: projects.db,
    connectionString: projectsUrl,
    bus: producerBus,
    stream: STREAMS.projects,
    service: 'project-service',
  }).start()
  outbox.onCommitted(() => relay.kick())
  await until('the relay to lead', () => relay.isLeader)
  return relay
}

let created = 0
const newProject = () => {
  const n = ++created
  return {
    project: {
      name: `bench project ${n}`,
      description: 'created by bench/events.ts',
      status: 'active' as const,
    },
    owner: (n % 1000) + 1,
  }
}

const unsent = async () =>
  Number(
    (
      await projects.db
        .selectFrom('event_outbox')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('sent_at', 'is', null)
        .executeTakeFirstOrThrow()
    ).n,
  )

// ---------------------------------------------------------------------------------------------------
// (a) The outbox's cost on a create

const VARIANTS = {
  without: 'create without the outbox',
  with: 'create with the outbox, relay running',
} as const
type Variant = keyof typeof VARIANTS
let recorded = 0

async function createRun(variant: Variant, creates: number) {
  const outbox = variant === 'with' ? new Outbox('project-service') : new NoOutbox('project-service')
  const relay = variant === 'with' ? await startRelay(outbox) : null
  const repository = new ProjectRepository(projects.db, projects.pool, outbox)
  const node = process.cpuUsage()
  const postgres = cpuSeconds(postmaster)
  const broker = cpuSeconds(natsPid)
  const started = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < creates) {
        next++
        const { project, owner } = newProject()
        await repository.create(project, owner)
      }
    }),
  )
  const committing = (performance.now() - started) / 1000
  // The run ends when the relay has published and marked sent every row of it (polled, cheaply).
  const backlog = relay ? await unsent() : 0
  if (relay) await until('the relay to send every row', async () => (await unsent()) === 0, 20)
  const seconds = (performance.now() - started) / 1000
  const used = process.cpuUsage(node)
  const us = (cpu: number) => +((cpu * 1e6) / creates).toFixed(1)
  const cpu = {
    node: +((used.user + used.system) / creates).toFixed(1),
    postgres: us(cpuSeconds(postmaster) - postgres),
    nats: us(cpuSeconds(natsPid) - broker),
  }
  await relay?.stop()
  if (relay) recorded += creates
  return {
    creates,
    /** Until the last create committed. */
    creates_per_second: Math.round(creates / committing),
    /** Rows the relay had still to send when the last create committed, and how long it took to send them. */
    backlog_at_last_create: backlog,
    drain_ms: Math.round((seconds - committing) * 1000),
    cpu_us_per_create: { ...cpu, total: +(cpu.node + cpu.postgres + cpu.nats).toFixed(1) },
  }
}

// ---------------------------------------------------------------------------------------------------
// (b) End-to-end latency

const committedAt = new Map<number, number>()
const appliedAt = new Map<number, number>()
let applying: number | null = null
let applications = 0
let reapplied = 0

/**
 * The consumer's database, calling `committed` each time one of its transactions has committed (the
 * EventConsumer applies every event in one): the moment its effect is visible to everyone else.
 */
function noticingCommits<DB>(db: Kysely<DB>, committed: () => void): Kysely<DB> {
  return new Proxy(db, {
    get(target, property) {
      if (property === 'transaction') {
        return () => {
          const builder = target.transaction()
          return {
            execute: async <T>(fn: (trx: Transaction<DB>) => Promise<T>) => {
              const result = await builder.execute(fn)
              committed()
              return result
            },
          }
        }
      }
      const value = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

const addMember = projectEventHandlers['projects.member.added'] as EventHandler<'projects.member.added'>
function startConsumer(): EventConsumer {
  const db = noticingCommits(tasks.db, () => {
    if (applying === null) return
    if (appliedAt.has(applying)) reapplied++
    appliedAt.set(applying, performance.now())
    applications++
    applying = null
  })
  return new EventConsumer({
    bus: consumerBus,
    db,
    stream: STREAMS.projects,
    durable: 'task-service',
    handlers: {
      'projects.member.added': async (event, trx) => {
        await addMember(event, trx)
        applying = event.data.project_id
      },
    },
  }).start()
}

async function latencyRun(repository: ProjectRepository, events: number) {
  const ids: number[] = []
  const writes: Promise<void>[] = []
  const started = performance.now()
  // Open loop: each create starts at its time whether or not the earlier ones have finished.
  for (let i = 0; i < events; i++) {
    const wait = started + (i * 1000) / RATE - performance.now()
    if (wait > 0) await sleep(wait)
    const { project, owner } = newProject()
    writes.push(
      repository.create(project, owner).then((row) => {
        committedAt.set(row.id, performance.now())
        ids.push(row.id)
      }),
    )
  }
  await Promise.all(writes)
  const seconds = (performance.now() - started) / 1000
  await until(`${events} events to be applied`, () => ids.every((id) => appliedAt.has(id)))
  const toApplied = (performance.now() - started) / 1000
  const latencies = ids
    .map((id) => (appliedAt.get(id) as number) - (committedAt.get(id) as number))
    .sort((a, b) => a - b)
  const at = (p: number) =>
    +(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0).toFixed(2)
  const { n: effects } = await tasks.db
    .selectFrom('project_members')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('project_id', 'in', ids)
    .executeTakeFirstOrThrow()
  return {
    events,
    rate_per_second: Math.round(events / seconds),
    /** Events applied per second from the first create to the last effect: below the rate, a queue grew. */
    applied_per_second: Math.round(events / toApplied),
    p50_ms: at(0.5),
    p90_ms: at(0.9),
    p99_ms: at(0.99),
    max_ms: at(1),
    effect_rows: Number(effects),
  }
}

// ---------------------------------------------------------------------------------------------------

let output: Record<string, unknown> = {}
try {
  log(`warming up: ${WARMUP_CREATES} creates each way`)
  for (const variant of Object.keys(VARIANTS) as Variant[]) await createRun(variant, WARMUP_CREATES)
  const runs: Record<Variant, Awaited<ReturnType<typeof createRun>>[]> = { without: [], with: [] }
  for (let round = 1; round <= ROUNDS; round++) {
    for (const variant of Object.keys(VARIANTS) as Variant[]) {
      const result = await createRun(variant, CREATES)
      log(`round ${round}: ${VARIANTS[variant]}: ${JSON.stringify(result)}`)
      runs[variant].push(result)
    }
  }
  // Every recorded event was sent, and reached the stream (the broker dropped no duplicate of ours).
  const { n: outboxRows } = await projects.db
    .selectFrom('event_outbox')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow()
  const streamMessages = (await jsm.streams.info(STREAMS.projects.name)).state.messages
  const left = await unsent()
  if (Number(outboxRows) !== recorded || left !== 0 || streamMessages !== recorded)
    throw new Error(
      `outbox: ${recorded} events recorded, ${outboxRows} rows, ${left} unsent, ${streamMessages} in the stream`,
    )
  const meanTotal = (variant: Variant) =>
    runs[variant].reduce((sum, run) => sum + run.cpu_us_per_create.total, 0) / runs[variant].length
  const percent = (value: number, base: number) => +(((value - base) / base) * 100).toFixed(1)
  const costPercent = percent(meanTotal('with'), meanTotal('without'))
  const perRound = runs.with.map((run, i) =>
    percent(run.cpu_us_per_create.total, runs.without[i]?.cpu_us_per_create.total as number),
  )
  log(`the outbox's cost on a create: ${costPercent} % of all CPU (per round: ${perRound.join(' %, ')} %)`)
  if (!smoke && costPercent > TARGET_PERCENT)
    loud(`the outbox costs ${costPercent} % over a create without it: the target is ≤ ${TARGET_PERCENT} %`)

  // The latency runs start on an empty stream: the consumer's first delivery is their first event.
  await jsm.streams.purge(STREAMS.projects.name)
  const outbox = new Outbox('project-service')
  const relay = await startRelay(outbox)
  const consumer = startConsumer()
  const repository = new ProjectRepository(projects.db, projects.pool, outbox)
  try {
    log(`latency: warming up with ${WARMUP_EVENTS} events at ${RATE}/s`)
    await latencyRun(repository, WARMUP_EVENTS)
    const latency = []
    for (let round = 1; round <= ROUNDS; round++) {
      const result = await latencyRun(repository, EVENTS)
      log(`latency round ${round}: ${JSON.stringify(result)}`)
      latency.push(result)
    }
    // Exactly once: each event's effect committed once, one effect row and one inbox row per event.
    const total = WARMUP_EVENTS + ROUNDS * EVENTS
    const { n: inboxRows } = await tasks.db
      .selectFrom('event_inbox')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('consumer', '=', 'task-service')
      .executeTakeFirstOrThrow()
    const { n: effectRows } = await tasks.db
      .selectFrom('project_members')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .executeTakeFirstOrThrow()
    const exactlyOnce =
      applications === total &&
      reapplied === 0 &&
      Number(inboxRows) === total &&
      Number(effectRows) === total &&
      latency.every((run) => run.effect_rows === run.events)
    if (!exactlyOnce)
      throw new Error(
        `latency: ${total} events, ${applications} applied (${reapplied} again), ${inboxRows} inbox rows, ${effectRows} effect rows`,
      )
    output = {
      outbox: {
        creates: CREATES,
        warmup_creates: WARMUP_CREATES,
        concurrency: CONCURRENCY,
        pool_max: POOL_MAX,
        rounds: ROUNDS,
        variants: Object.fromEntries(
          (Object.keys(VARIANTS) as Variant[]).map((variant) => [VARIANTS[variant], runs[variant]]),
        ),
        cost_percent: costPercent,
        cost_percent_per_round: perRound,
        target_percent: TARGET_PERCENT,
        events_recorded: recorded,
        all_sent: true,
        stream_messages: streamMessages,
      },
      latency: {
        rate_per_second: RATE,
        events: EVENTS,
        warmup_events: WARMUP_EVENTS,
        rounds: ROUNDS,
        runs: latency,
        exactly_once: true,
        inbox_rows: Number(inboxRows),
        effect_rows: Number(effectRows),
      },
    }
  } finally {
    await consumer.stop()
    await relay.stop()
  }
} finally {
  await producerBus.close()
  await consumerBus.close()
  await projects.close()
  await tasks.close()
  await admin.end()
  await nats.remove()
  await pgServer.stop()
}

process.stdout.write(
  `${JSON.stringify({ when: new Date().toISOString(), smoke, node: process.version, cpu: CPU, pinned, ...output }, null, 2)}\n`,
)
