// The text search at scale: 200k tasks in one project, `GET /tasks?q=` pages, and the plain reads of other users
// while 30 searches run at once (docs/benchmarks.md, "Text search at 200k tasks").
//   pnpm --filter @task-manager/bench run search            # about 5 minutes on 2 cores; writes bench-results/search.json
//   pnpm --filter @task-manager/bench run search --smoke    # about a minute: 2k tasks, short phases; proves it still works
// Starts the whole system with the `pnpm start` launcher (embedded PostgreSQL, the four services, authentication on)
// in a throw-away data directory on free ports of 127.0.0.1, seeds the tasks with one INSERT into the
// task-service's own database, then measures against the task-service directly (the gateway's per-client rate
// limits would cap the load at 100 reads a minute per user). Every loop is bounded in count or time.
// Targets (issue 15): a search page ≤ 20 ms at p50; other users' plain reads unaffected (p50 within 2× of alone,
// no 5xx) while 30 searches run.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '@task-manager/testing'
import pg from 'pg'
import { Agent, request } from 'undici'
import { launch, ROOT, type ServiceName } from '../scripts/start/system.ts'

const smoke = process.argv.includes('--smoke')
const TASKS = smoke ? 2_000 : 200_000
const SEARCHERS = 30
const SOLO_SEARCHES = smoke ? 30 : 300
const SOLO_READS = smoke ? 30 : 300
const LOADED_SECONDS = smoke ? 3 : 30
const WORDS = ['alpha', 'budget', 'cluster', 'deploy', 'estimate', 'feature', 'gateway', 'hotfix', 'invoice']
const WORDS2 = ['review', 'launch', 'migration', 'report', 'rollout', 'audit', 'design', 'backlog', 'sprint']
// Terms of three characters or more (what the trigram indexes serve): common, rare and absent ones.
const TERMS = ['deploy', 'invoice rollout', 'sprint', 'task 19999', 'zebra', 'migr', 'hotfix audit']

const log = (message: string) => process.stderr.write(`[bench search] ${message}\n`)

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0
}

function summary(latencies: number[], statuses: Map<number, number>) {
  const sorted = [...latencies].sort((a, b) => a - b)
  return {
    requests: sorted.length,
    p50_ms: +percentile(sorted, 50).toFixed(2),
    p90_ms: +percentile(sorted, 90).toFixed(2),
    p99_ms: +percentile(sorted, 99).toFixed(2),
    statuses: Object.fromEntries(statuses),
  }
}

const dataDir = mkdtempSync(join(tmpdir(), 'bench-search-'))
const names: ServiceName[] = ['task-service', 'user-service', 'project-service', 'gateway']
const ports = Object.fromEntries(await Promise.all(names.map(async (name) => [name, await freePort()])))
log(`starting the system (data in ${dataDir})`)
const system = await launch({
  dataDir,
  host: '127.0.0.1',
  ports,
  postgresPort: await freePort(),
  env: {
    'user-service': { PASSWORD_SCRYPT_LOG_N: '12', LOG_LEVEL: 'warn' },
    'task-service': {
      LOG_LEVEL: 'warn',
      // The per-client limits are the gateway's business and not what is measured here.
      RATE_LIMIT_READS_PER_MINUTE: '1000000',
    },
    'project-service': { LOG_LEVEL: 'warn' },
    gateway: { LOG_LEVEL: 'warn' },
  },
  progress: (message) => log(message),
})

const agent = new Agent({ connections: 64 })
const gateway = system.gatewayUrl
const tasks = system.services['task-service'].url

async function call(base: string, method: string, path: string, token?: string, body?: unknown) {
  const started = performance.now()
  const response = await request(`${base}${path}`, {
    method: method as 'GET',
    dispatcher: agent,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  })
  const text = await response.body.text()
  return { status: response.statusCode, ms: performance.now() - started, json: () => JSON.parse(text) }
}

async function signUp(name: string) {
  const email = `${name}-${process.pid}@example.com`
  const password = 'correct horse battery staple'
  const user = await call(gateway, 'POST', '/users', undefined, { email, name, password })
  if (user.status !== 201) throw new Error(`register ${name}: ${user.status}`)
  const login = await call(gateway, 'POST', '/auth/token', undefined, { email, password })
  if (login.status !== 200) throw new Error(`login ${name}: ${login.status}`)
  return { id: user.json().id as number, token: login.json().access_token as string }
}

try {
  // Three members share the big project (owner + two editors); a fourth user reads a project of their own.
  const [owner, editor1, editor2, other] = [
    await signUp('owner'),
    await signUp('editor-one'),
    await signUp('editor-two'),
    await signUp('other'),
  ]
  const big = (await call(gateway, 'POST', '/projects', owner.token, { name: 'Big' })).json().id as number
  for (const editor of [editor1, editor2]) {
    const added = await call(gateway, 'POST', `/projects/${big}/members`, owner.token, {
      user_id: editor.id,
      role: 'editor',
    })
    if (added.status !== 201) throw new Error(`add member: ${added.status}`)
  }
  const small = (await call(gateway, 'POST', '/projects', other.token, { name: 'Small' })).json().id as number
  const otherIds: number[] = []
  for (let i = 0; i < 20; i += 1) {
    const created = await call(gateway, 'POST', '/tasks', other.token, {
      title: `Other task ${i}`,
      project_id: small,
    })
    if (created.status !== 201) throw new Error(`create: ${created.status}`)
    otherIds.push(created.json().id)
  }

  log(`seeding ${TASKS} tasks into project ${big}`)
  const seedStarted = performance.now()
  const db = new pg.Client({ connectionString: system.databaseUrls['task-service'] })
  await db.connect()
  await db.query(
    `insert into tasks (title, description, status, priority, user_id, project_id, tags)
     select
       'Task ' || g || ' ' || ($3::text[])[1 + g % 9] || ' ' || ($4::text[])[1 + (g / 9) % 9],
       'Work item ' || g || ': ' || ($4::text[])[1 + (g / 7) % 9] || ' of the ' || ($3::text[])[1 + (g / 5) % 9],
       (array['todo','in_progress','done'])[1 + g % 3],
       (array['low','medium','high'])[1 + g % 3],
       $2::int,
       $1::int,
       array[($3::text[])[1 + g % 9]]::varchar(50)[]
     from generate_series(1, $5::int) g`,
    [big, owner.id, WORDS, WORDS2, TASKS],
  )
  await db.query('analyze tasks')
  await db.end()
  const seedSeconds = (performance.now() - seedStarted) / 1000
  log(`seeded in ${seedSeconds.toFixed(1)} s`)

  const searchPath = (i: number) =>
    `/tasks?project_id=${big}&q=${encodeURIComponent(TERMS[i % TERMS.length] as string)}&limit=50`
  const readPath = (i: number) =>
    i % 2 === 0 ? `/tasks/${otherIds[i % otherIds.length]}` : `/tasks?project_id=${small}`
  const count = (statuses: Map<number, number>, status: number) =>
    statuses.set(status, (statuses.get(status) ?? 0) + 1)

  async function sequential(n: number, path: (i: number) => string, token: string) {
    const latencies: number[] = []
    const statuses = new Map<number, number>()
    for (let i = 0; i < n; i += 1) {
      const answer = await call(tasks, 'GET', path(i), token)
      latencies.push(answer.ms)
      count(statuses, answer.status)
    }
    return summary(latencies, statuses)
  }

  // Warm-up: caches, prepared statements, JIT.
  await sequential(smoke ? 5 : 30, searchPath, owner.token)
  await sequential(smoke ? 5 : 30, readPath, other.token)

  log('1/3 a search page alone (one request at a time)')
  const searchAlone = await sequential(SOLO_SEARCHES, searchPath, owner.token)
  log(`    p50 ${searchAlone.p50_ms} ms, p99 ${searchAlone.p99_ms} ms`)
  log("2/3 another user's plain reads alone")
  const readsAlone = await sequential(SOLO_READS, readPath, other.token)
  log(`    p50 ${readsAlone.p50_ms} ms, p99 ${readsAlone.p99_ms} ms`)

  log(`3/3 the same reads while ${SEARCHERS} searches run at once for ${LOADED_SECONDS} s`)
  const members = [owner, editor1, editor2]
  const deadline = performance.now() + LOADED_SECONDS * 1000
  const searchLatencies: number[] = []
  const searchStatuses = new Map<number, number>()
  const searchers = Array.from({ length: SEARCHERS }, async (_, worker) => {
    const member = members[worker % members.length] as (typeof members)[number]
    for (let i = worker; performance.now() < deadline; i += SEARCHERS) {
      const answer = await call(tasks, 'GET', searchPath(i), member.token)
      searchLatencies.push(answer.ms)
      count(searchStatuses, answer.status)
    }
  })
  const readLatencies: number[] = []
  const readStatuses = new Map<number, number>()
  const reader = (async () => {
    // Let the searches fill the pool first.
    await new Promise((resolve) => setTimeout(resolve, 500))
    for (let i = 0; performance.now() < deadline; i += 1) {
      const answer = await call(tasks, 'GET', readPath(i), other.token)
      readLatencies.push(answer.ms)
      count(readStatuses, answer.status)
    }
  })()
  await Promise.all([...searchers, reader])
  const searchesLoaded = summary(searchLatencies, searchStatuses)
  const readsLoaded = summary(readLatencies, readStatuses)
  log(
    `    reads p50 ${readsLoaded.p50_ms} ms, p99 ${readsLoaded.p99_ms} ms, statuses ${JSON.stringify(readsLoaded.statuses)}`,
  )
  log(`    searches p50 ${searchesLoaded.p50_ms} ms, statuses ${JSON.stringify(searchesLoaded.statuses)}`)

  const readsOk = Object.keys(readsLoaded.statuses).every((status) => Number(status) < 500)
  const result = {
    smoke,
    tasks: TASKS,
    seed_seconds: +seedSeconds.toFixed(1),
    search_alone: searchAlone,
    reads_alone: readsAlone,
    under_load: {
      searchers: SEARCHERS,
      seconds: LOADED_SECONDS,
      searches: searchesLoaded,
      reads: readsLoaded,
    },
    targets: {
      search_page_p50_le_20ms: searchAlone.p50_ms <= 20,
      reads_unaffected:
        readsOk && readsLoaded.p50_ms <= Math.max(2 * readsAlone.p50_ms, readsAlone.p50_ms + 5),
    },
  }
  const out = JSON.stringify(result, null, 2)
  if (!smoke) {
    mkdirSync(join(ROOT, 'bench-results'), { recursive: true })
    writeFileSync(join(ROOT, 'bench-results', 'search.json'), `${out}\n`)
  }
  process.stdout.write(`${out}\n`)
  log(
    `search page p50 ${searchAlone.p50_ms} ms (target ≤ 20: ${result.targets.search_page_p50_le_20ms ? 'met' : 'MISSED'}); ` +
      `reads under load p50 ${readsLoaded.p50_ms} ms vs ${readsAlone.p50_ms} alone (${result.targets.reads_unaffected ? 'unaffected' : 'AFFECTED'})`,
  )
} finally {
  await agent.close()
  await system.stop()
  rmSync(dataDir, { recursive: true, force: true })
}
