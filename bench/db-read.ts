// Task-service database read path: one task by id, five ways, Node CPU per query and throughput.
//   node --conditions=@task-manager/source --import tsx bench/db-read.ts [--smoke]
// Starts its own embedded PostgreSQL (or uses BENCH_DATABASE_URL), applies the task-service migrations,
// seeds tasks, then runs each variant twice, interleaved, at a fixed concurrency. CPU per query is this
// process's user + system CPU (process.cpuUsage) divided by the queries run: PostgreSQL's own CPU is not
// in it. Every loop is bounded in count. Prints one JSON document on stdout (progress on stderr).
import { Bulkhead, createDatabase, migrateToLatest, prepareQuery } from '@task-manager/service-kit'
import { startEmbeddedPostgres } from '@task-manager/testing'
import { migrations } from '../services/task-service/src/db/migrations/index.js'
import type { TaskDatabase } from '../services/task-service/src/db/schema.js'
import { TaskRepository } from '../services/task-service/src/tasks/repository.js'

const smoke = process.argv.includes('--smoke')
const TASKS = smoke ? 200 : 10_000
const CALLS = smoke ? 500 : Number(process.env.BENCH_DB_CALLS ?? 20_000)
const CONCURRENCY = Number(process.env.BENCH_DB_CONCURRENCY ?? 8)
const ROUNDS = 2
const log = (line: string) => process.stderr.write(`[db-read] ${line}\n`)

const external = process.env.BENCH_DATABASE_URL
const server = external ? undefined : await startEmbeddedPostgres()
const adminUrl = external ?? (server?.adminUrl as string)
const admin = createDatabase({ connectionString: adminUrl, max: 1 }).pool
const dbName = `bench_tasks_${Date.now()}`
await admin.query(`create database ${dbName}`)
const url = new URL(adminUrl)
url.pathname = `/${dbName}`

const database = createDatabase<TaskDatabase>({ connectionString: url.toString(), max: CONCURRENCY })
await migrateToLatest(database.db, migrations)
log(`seeding ${TASKS} tasks`)
// Seeding is set-up, not the measured path: one generate_series insert.
await database.pool.query(
  `insert into tasks (title, description, status, priority, user_id, project_id, due_date, tags)
   select 'task ' || n, 'a description of some length, as tasks have', 'todo', 'medium', 1, 1, null,
          array['bench', 'read'] from generate_series(1, $1::int) as n`,
  [TASKS],
)
await database.pool.query('analyze tasks')

const db = database.db
const pool = database.pool
// Only findById is measured: the list limits are the repository's required shape, never used here.
const repository = new TaskRepository(db, {
  db,
  searches: new Bulkhead({ concurrency: 1, maxWaiting: 0, refusal: 'not measured here' }),
})
const SELECT_BY_ID = 'select * from "tasks" where "id" = $1'
const compiled = db.selectFrom('tasks').selectAll().where('id', '=', 0).compile()
const prepared = prepareQuery(db, 'bench_task_by_id', db.selectFrom('tasks').selectAll().where('id', '=', 0))

const variants: Record<string, (id: number) => Promise<unknown>> = {
  'raw pg, named prepared statement': async (id) =>
    (await pool.query({ name: 'raw_task_by_id', text: SELECT_BY_ID, values: [id] })).rows[0],
  'raw pg, unnamed statement': async (id) => (await pool.query(SELECT_BY_ID, [id])).rows[0],
  'kysely, query built per call (before)': (id) =>
    db.selectFrom('tasks').selectAll().where('id', '=', id).executeTakeFirst(),
  'kysely, compiled once, executed by kysely': async (id) =>
    (await db.executeQuery({ ...compiled, parameters: [id] })).rows[0],
  'kysely, compiled once, pg named statement (prepareQuery)': async (id) => (await prepared.execute([id]))[0],
  'TaskRepository.findById (after)': (id) => repository.findById(id),
}

async function measure(once: (id: number) => Promise<unknown>, calls: number) {
  let next = 0
  let found = 0
  const latencies: number[] = []
  const cpu = process.cpuUsage()
  const started = performance.now()
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < calls) {
        const i = next++
        const t = performance.now()
        if (await once((i % TASKS) + 1)) found++
        latencies.push(performance.now() - t)
      }
    }),
  )
  const seconds = (performance.now() - started) / 1000
  const used = process.cpuUsage(cpu)
  if (found !== calls) throw new Error(`expected ${calls} rows, found ${found}`)
  latencies.sort((a, b) => a - b)
  const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0
  return {
    queries_per_second: Math.round(calls / seconds),
    cpu_us_per_query: +((used.user + used.system) / calls).toFixed(1),
    p50_ms: +at(0.5).toFixed(3),
    p99_ms: +at(0.99).toFixed(3),
  }
}

// Warm-up: JIT, connections, statements prepared on every pooled connection.
for (const [name, once] of Object.entries(variants)) {
  log(`warming up: ${name}`)
  await measure(once, Math.min(CALLS, 3000))
}
const runs: Record<string, ReturnType<typeof measure> extends Promise<infer R> ? R[] : never> = {}
for (let round = 1; round <= ROUNDS; round++) {
  for (const [name, once] of Object.entries(variants)) {
    const result = await measure(once, CALLS)
    log(`round ${round}: ${name}: ${JSON.stringify(result)}`)
    runs[name] = [...(runs[name] ?? []), result]
  }
}

const best = (name: string) => Math.min(...(runs[name] ?? []).map((r) => r.cpu_us_per_query))
const rawNamed = best('raw pg, named prepared statement')
const rows = Object.entries(runs).map(([name, results]) => ({
  name,
  runs: results,
  best_cpu_us_per_query: best(name),
  cpu_vs_raw_pg_named: +(best(name) / rawNamed).toFixed(2),
}))

await database.close()
await admin.query(`drop database ${dbName} with (force)`)
await admin.end()
await server?.stop()

process.stdout.write(
  `${JSON.stringify({ when: new Date().toISOString(), node: process.version, tasks: TASKS, calls: CALLS, concurrency: CONCURRENCY, rounds: ROUNDS, variants: rows }, null, 2)}\n`,
)
