// The whole local system under load: start-up times, RSS idle and under load, database connections,
// the gateway against a direct call and nginx, and the task API through the gateway with auth on.
//   node --import tsx bench/system.ts [--smoke]      (bench/run.sh runs it)
//   BENCH_ONLY=list,mix node --import tsx bench/system.ts   only these task-API figures (get, list, create,
//                                                         update, mix), one phase: no gateway overhead, no tuned
//                                                         NODE_OPTIONS phase, no tracing cost, no pnpm start
//   node --import tsx bench/system.ts --only tracing   (or BENCH_ONLY=tracing) only the tracing cost, its settings
//     interleaved BENCH_TRACING_PASSES times (default 6, runs of BENCH_TRACING_DURATION_S, default 5 s);
//     BENCH_TRACING_SETTINGS=0,2 runs some of its settings; with BENCH_CPU_PROF_DIR=DIR each setting's services
//     write their V8 CPU profiles into DIR/setting<N>.
// Starts its own embedded PostgreSQL and the four services from their dist/ builds, every server pinned to
// CPU 0 and listening on 127.0.0.1; wrk runs pinned to CPU 1. Each figure is measured twice; every run is
// bounded in time. Writes JSON on stdout; progress and anything skipped go to stderr, loudly.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
// Relative imports: scripts/ is not a workspace package, so it reaches the sources directly.
import { createDatabase } from '@task-manager/service-kit'
import { freePort, startEmbeddedPostgres, startTestNats } from '@task-manager/testing'
import { nginxProxy } from './nginx.js'
import { CLK_TCK, childrenOf, cpuSeconds, has, postmasterPid } from './proc.js'

const smoke = process.argv.includes('--smoke')
// Six interleaved passes of 5 s runs: more alternations between the settings than two long runs.
const TRACING_PASSES = Number(process.env.BENCH_TRACING_PASSES ?? 6)
const TRACING_DURATION_S = Number(process.env.BENCH_TRACING_DURATION_S ?? (smoke ? 1 : 5))
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF_DIR
// Which tracing settings run (0 no entry, 1 off, 2 10 %, 3 100 %): all by default; BENCH_TRACING_SETTINGS=0,2 for two.
const TRACING_SETTINGS = (process.env.BENCH_TRACING_SETTINGS ?? '0,1,2,3').split(',').map(Number)
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? (smoke ? 1 : 8))
const WARMUP_S = smoke ? 1 : 2
const ROUNDS = 2
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32)
const SERVER_CPU = process.env.BENCH_SERVER_CPU ?? '0'
const LOAD_CPU = process.env.BENCH_LOAD_CPU ?? '1'
const NODE_OPTIONS_CANDIDATE =
  process.env.BENCH_NODE_OPTIONS ?? '--max-semi-space-size=4 --max-old-space-size=160'
// Large enough that no update range comes round again within one run. wrk calls request() once before
// it starts sending (a request it checks but never sends), which consumes version 1 of the range's first
// id: if ids came round, that id's If-Match would name a version the server never reached (412).
const TASKS_PER_RANGE = smoke ? 5000 : 20_000
const root = resolve(import.meta.dirname, '..')
const API_FIGURES = ['get', 'list', 'create', 'update', 'mix'] as const
type ApiFigure = (typeof API_FIGURES)[number]
type Figure = ApiFigure | 'tracing'
/**
 * BENCH_ONLY (or --only): a comma-separated subset of the task-API figures, or `tracing` (the tracing cost alone);
 * unset, every figure of the bench runs.
 */
const onlyArg = process.argv.indexOf('--only')
const onlyList = onlyArg === -1 ? process.env.BENCH_ONLY : process.argv[onlyArg + 1]
const only: Set<Figure> | null = onlyList
  ? new Set(
      onlyList.split(',').map((name) => {
        const figure = name.trim() as Figure
        if (figure !== 'tracing' && !API_FIGURES.includes(figure))
          throw new Error(`BENCH_ONLY: unknown figure "${name}" (one of ${API_FIGURES.join(', ')}, tracing)`)
        return figure
      }),
    )
  : null
/** Whether the phases with the task-API figures run at all. */
const apiFigures = only === null || API_FIGURES.some((figure) => only.has(figure))
const wanted = (figure: ApiFigure) => only === null || only.has(figure)
const log = (line: string) => process.stderr.write(`[bench] ${line}\n`)
const loud = (line: string) => process.stderr.write(`\n[bench] !!! ${line}\n\n`)

const tools = { taskset: has('taskset'), wrk: has('wrk'), nginx: has('nginx') }
const skipped: string[] = []
function skip(figure: string, why: string) {
  skipped.push(`${figure}: ${why}`)
  loud(`SKIPPED ${figure}: ${why}`)
}
if (!tools.taskset) loud('taskset is missing (apt-get install util-linux): servers and load run unpinned')
if (!tools.wrk) loud('wrk is missing (apt-get install wrk): every load figure is skipped')
if (!tools.nginx) loud('nginx is missing (apt-get install nginx): the nginx comparison is skipped')

const pin = (cpu: string, command: string, args: string[]): [string, string[]] =>
  tools.taskset ? ['taskset', ['-c', cpu, command, ...args]] : [command, args]

// ---------------------------------------------------------------------------------------------------
// Processes: RSS from /proc (CPU time: proc.ts).

function statusKb(pid: number, field: string): number {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match ? Number(match[1]) : 0
  } catch {
    return 0
  }
}

/** PostgreSQL's memory: proportional set size of the postmaster and its children (shared memory split). */
function postgresPssMb(postmaster: number): number {
  let kb = 0
  for (const pid of [postmaster, ...childrenOf(postmaster)]) {
    try {
      const match = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))
      kb += match ? Number(match[1]) : 0
    } catch {
      // exited meanwhile
    }
  }
  return +(kb / 1024).toFixed(1)
}

/** CPU seconds of the processes' threads so far, summed by thread name (/proc/<pid>/task/<tid>/comm). */
function threadCpu(pids: number[]): Record<string, number> {
  const byName: Record<string, number> = {}
  for (const pid of pids) {
    let tids: string[] = []
    try {
      tids = readdirSync(`/proc/${pid}/task`)
    } catch {
      continue
    }
    for (const tid of tids) {
      try {
        const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
        byName[name] = (byName[name] ?? 0) + (Number(fields[11]) + Number(fields[12])) / CLK_TCK
      } catch {
        // the thread ended meanwhile
      }
    }
  }
  return byName
}

interface Service {
  name: string
  url: string
  pid: number
  child: ChildProcess
  readyMs: number
  output: () => string
}
const running: ChildProcess[] = []

async function startService(
  name: string,
  entry: string,
  env: Record<string, string>,
  port: number,
  nodeOptions: string,
  execArgv: string[] = [],
): Promise<Service> {
  // A server still listening there (a phase not stopped) would answer for this one and be measured instead.
  const taken = await fetch(`http://127.0.0.1:${port}/health/live`).then(
    (response) => response.body?.cancel().then(() => true),
    () => false,
  )
  if (taken) throw new Error(`${name}: port ${port} is still served by an earlier process`)
  const [command, args] = pin(SERVER_CPU, process.execPath, [...execArgv, join(root, entry)])
  const started = performance.now()
  const child = spawn(command, args, {
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      NODE_OPTIONS: nodeOptions,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  running.push(child)
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output = (output + chunk).slice(-20_000)
  })
  child.stderr?.on('data', (chunk) => {
    output = (output + chunk).slice(-20_000)
  })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 30_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited early:\n${output}`)
    if (Date.now() > deadline) throw new Error(`${name} not ready after 30 s:\n${output}`)
    try {
      const response = await fetch(`${url}/health/ready`)
      await response.body?.cancel()
      if (response.status === 200) break
    } catch {
      // not listening yet
    }
    await sleep(10)
  }
  const readyMs = Math.round(performance.now() - started)
  // taskset execs node, so the pid is node's own.
  const pid = child.pid as number
  log(`${name} ready in ${readyMs} ms (pid ${pid})`)
  return { name, url, pid, child, readyMs, output: () => output }
}

async function stop(child: ChildProcess) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((done) => child.once('exit', done))
  child.kill('SIGTERM')
  await Promise.race([exited, sleep(10_000)])
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
}

// ---------------------------------------------------------------------------------------------------
// wrk

const scratch = mkdtempSync(join(tmpdir(), 'task-manager-bench-'))

function toMs(value: string): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(value)
  if (!match) return Number.NaN
  const n = Number(match[1])
  return match[2] === 'us' ? n / 1000 : match[2] === 's' ? n * 1000 : n
}

interface LoadResult {
  requests: number
  rps: number
  p50_ms: number
  p99_ms: number
  non_2xx: number
  socket_errors: string | null
  /** Responses by status code (only for the Lua-driven figures). */
  statuses?: Record<string, number>
}

function wrkArgs(url: string, seconds: number, script?: string, scriptArgs: string[] = [], headers = {}) {
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency']
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`)
  if (script) args.push('-s', script)
  args.push(url)
  if (scriptArgs.length > 0) args.push('--', ...scriptArgs)
  return args
}

async function wrk(args: string[]): Promise<LoadResult> {
  const [command, argv] = pin(LOAD_CPU, 'wrk', args)
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (chunk) => {
    out += chunk
  })
  child.stderr.on('data', (chunk) => {
    out += chunk
  })
  const code = await new Promise<number | null>((done) => child.once('exit', done))
  if (code !== 0) throw new Error(`wrk failed (${code}):\n${out}`)
  return {
    requests: Number(/(\d+) requests in/.exec(out)?.[1]),
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]),
    p50_ms: toMs(/ 50%\s+(\S+)/.exec(out)?.[1] ?? ''),
    p99_ms: toMs(/ 99%\s+(\S+)/.exec(out)?.[1] ?? ''),
    non_2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    socket_errors: /Socket errors: (.*)/.exec(out)?.[1] ?? null,
    ...(/^STATUS (.*)$/m.test(out) ? { statuses: JSON.parse(/^STATUS (.*)$/m.exec(out)?.[1] ?? '{}') } : {}),
  }
}

/** Peak RSS of each watched process while `work` runs (sampled every 100 ms). */
async function watchRss<T>(pids: Record<string, number>, work: () => Promise<T>) {
  const peak: Record<string, number> = Object.fromEntries(Object.keys(pids).map((k) => [k, 0]))
  let active = true
  const sampler = (async () => {
    while (active) {
      for (const [name, pid] of Object.entries(pids)) {
        peak[name] = Math.max(peak[name] ?? 0, statusKb(pid, 'VmRSS'))
      }
      await sleep(100)
    }
  })()
  try {
    return { result: await work(), peakRssMb: mb(peak) }
  } finally {
    active = false
    await sampler
  }
}
const mb = (kb: Record<string, number>) =>
  Object.fromEntries(Object.entries(kb).map(([k, v]) => [k, +(v / 1024).toFixed(1)]))

// ---------------------------------------------------------------------------------------------------
// Lua: requests that change per call (ids, If-Match versions, bodies). The token comes as an argument.

const taskBody = (userId: number, projectId: number, title: string) =>
  JSON.stringify({
    title,
    description: 'measured by pnpm bench',
    status: 'in_progress',
    priority: 'high',
    user_id: userId,
    project_id: projectId,
    due_date: '2027-01-01T12:00:00Z',
    tags: ['bench'],
  })

const LUA_COMMON = `
local threads = {}
setup = function(thread) table.insert(threads, thread) end
codes = {}
response = function(status) codes[status] = (codes[status] or 0) + 1 end
done = function()
  local parts = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("codes")) do table.insert(parts, '"' .. status .. '":' .. n) end
  end
  io.write("STATUS {" .. table.concat(parts, ",") .. "}\\n")
end
local token, first, count, readFirst, readCount, body, listPath
local n = 0
local version = {}
init = function(args)
  token = args[1]; first = tonumber(args[2]); count = tonumber(args[3])
  readFirst = tonumber(args[4]); readCount = tonumber(args[5]); body = args[6]; listPath = args[7]
  math.randomseed(42)
end
local function headers(extra)
  local h = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
  if extra then for k, v in pairs(extra) do h[k] = v end end
  return h
end
local function getById()
  return wrk.format("GET", "/tasks/" .. (readFirst + math.random(0, readCount - 1)), headers(), nil)
end
local function list() return wrk.format("GET", listPath, headers(), nil) end
local function create() return wrk.format("POST", "/tasks", headers(), body) end
-- Each task in [first, first+count) starts at version 1 and ids go round robin over a range larger than
-- one run sends, so the ETag ("id.version") of each update is known and no update races another.
local function update()
  local id = first + (n % count)
  n = n + 1
  local v = version[id] or 1
  version[id] = v + 1
  return wrk.format("PUT", "/tasks/" .. id, headers({ ["If-Match"] = '"' .. id .. '.' .. v .. '"' }), body)
end
`
const LUA = {
  get: `${LUA_COMMON}\nrequest = getById\n`,
  list: `${LUA_COMMON}\nrequest = list\n`,
  create: `${LUA_COMMON}\nrequest = create\n`,
  update: `${LUA_COMMON}\nrequest = update\n`,
  // 80% reads: 60% one task, 20% a filtered page of 50; 10% creates, 10% updates with If-Match.
  mix: `${LUA_COMMON}
request = function()
  local r = math.random()
  if r < 0.6 then return getById() elseif r < 0.8 then return list() elseif r < 0.9 then return create() end
  return update()
end
`,
}
const luaFile: Record<string, string> = {}
for (const [name, text] of Object.entries(LUA)) {
  luaFile[name] = join(scratch, `${name}.lua`)
  writeFileSync(luaFile[name] as string, text)
}

// ---------------------------------------------------------------------------------------------------
// The system

const benchStarted = performance.now()
log('starting PostgreSQL (embedded)')
const pgServer = await startEmbeddedPostgres()
const postmaster = postmasterPid(pgServer.clusterDir)
const postgresReadyMs = Math.round(performance.now() - benchStarted)
// A real nats-server with JetStream, as the services run: the task-service decides access from its membership
// read model (replicated through events), the gateway and the services follow token revocations.
log('starting nats-server (JetStream)')
const nats = await startTestNats()
const admin = createDatabase({ connectionString: pgServer.adminUrl, max: 1, applicationName: 'pnpm-bench' })
const dbUrl = (name: string) => {
  const url = new URL(pgServer.adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}
/** The three databases, migrated by each service's own dist/migrate.js; returns how long migrating took. */
async function prepareDatabases(): Promise<number> {
  for (const name of ['bench_users', 'bench_projects', 'bench_tasks']) {
    await admin.pool.query(`create database ${name}`)
  }
  const started = performance.now()
  for (const [service, dbName] of [
    ['user-service', 'bench_users'],
    ['project-service', 'bench_projects'],
    ['task-service', 'bench_tasks'],
  ] as const) {
    execFileSync(process.execPath, [join(root, `services/${service}/dist/migrate.js`)], {
      // AUTH_MODE only so the config loads: migrating needs no peers.
      env: {
        PATH: process.env.PATH ?? '',
        DATABASE_URL: dbUrl(dbName),
        LOG_LEVEL: 'warn',
        AUTH_MODE: 'disabled',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    })
  }
  return Math.round(performance.now() - started)
}

// Free ports, not 8003-8006: a developer's own `pnpm start` may be running on those.
const PORTS = {
  user: await freePort(),
  project: await freePort(),
  task: await freePort(),
  gateway: await freePort(),
  taskOpen: await freePort(),
  nginx: await freePort(),
}
const BIG = '1000000000'
const jwt = { JWT_ISSUER: 'task-manager', JWT_AUDIENCE: 'task-manager-api' }

/** The four services' ports of one system. */
type SystemPorts = Record<'user' | 'project' | 'task' | 'gateway', number>

/** How a system is started: extra variables for every service, node flags before the entry, its own ports. */
interface Launch {
  env?: Record<string, string>
  execArgv?: string[]
  ports?: SystemPorts
}

async function startSystem(nodeOptions: string, launch: Launch = {}) {
  const started = performance.now()
  const extra = launch.env ?? {}
  // BENCH_CPU_PROF_DIR: every service writes a V8 CPU profile there when it stops (node --cpu-prof).
  const profile = process.env.BENCH_CPU_PROF_DIR
  const argv = [...(profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : []), ...(launch.execArgv ?? [])]
  const ports = launch.ports ?? PORTS
  const JWKS_URL = `http://127.0.0.1:${ports.user}/.well-known/jwks.json`
  const user = await startService(
    'user-service',
    'services/user-service/dist/server.js',
    {
      DATABASE_URL: dbUrl('bench_users'),
      NATS_URL: nats.url,
      ...jwt,
      // Cheaper password hashing than production (2^15): logins are set-up here, not the measured path.
      PASSWORD_SCRYPT_LOG_N: '12',
      REGISTRATION_RATE_LIMIT_PER_CLIENT: '1000',
      ...extra,
    },
    ports.user,
    nodeOptions,
    argv,
  )
  const project = await startService(
    'project-service',
    'services/project-service/dist/server.js',
    {
      DATABASE_URL: dbUrl('bench_projects'),
      NATS_URL: nats.url,
      ...jwt,
      JWKS_URL,
      USER_SERVICE_URL: user.url,
      ...extra,
    },
    ports.project,
    nodeOptions,
    argv,
  )
  const limits = {
    RATE_LIMIT_READS_PER_MINUTE: BIG,
    RATE_LIMIT_WRITES_PER_MINUTE: BIG,
    RATE_LIMIT_CREATES_PER_MINUTE: BIG,
  }
  const task = await startService(
    'task-service',
    'services/task-service/dist/server.js',
    {
      DATABASE_URL: dbUrl('bench_tasks'),
      NATS_URL: nats.url,
      ...jwt,
      JWKS_URL,
      PROJECT_SERVICE_URL: project.url,
      ...limits,
      ...extra,
    },
    ports.task,
    nodeOptions,
    argv,
  )
  const gateway = await startService(
    'gateway',
    'services/gateway/dist/server.js',
    {
      ...jwt,
      JWKS_URL,
      NATS_URL: nats.url,
      USER_SERVICE_URL: user.url,
      PROJECT_SERVICE_URL: project.url,
      TASK_SERVICE_URL: task.url,
      ...limits,
      // wrk is one client with CONNECTIONS connections: above the default bound (16) it would measure 429s.
      MAX_IN_FLIGHT_PER_CLIENT: String(CONNECTIONS * 2),
      ...extra,
    },
    ports.gateway,
    nodeOptions,
    argv,
  )
  const wholeMs = Math.round(performance.now() - started)
  return { user, project, task, gateway, wholeMs }
}

async function call(url: string, init: RequestInit & { expect: number }) {
  const response = await fetch(url, {
    ...init,
    headers: { 'content-type': 'application/json', ...(init.headers ?? {}) },
  })
  const text = await response.text()
  if (response.status !== init.expect) {
    throw new Error(`${init.method ?? 'GET'} ${url}: ${response.status} (expected ${init.expect}): ${text}`)
  }
  return text ? JSON.parse(text) : undefined
}

const results: Record<string, unknown> = {}

// The admin pool connects to the postgres database; seeding needs the task database.
const tasksDb = createDatabase({
  connectionString: dbUrl('bench_tasks'),
  max: 2,
  applicationName: 'pnpm-bench',
})

/** Seeds `count` tasks in SQL (set-up, not the measured path); returns the first id. */
async function seedTasks(userId: number, projectId: number, count: number): Promise<number> {
  const { rows } = await tasksDb.pool.query<{ first: number }>(
    `with inserted as (
       insert into tasks (title, description, status, priority, user_id, project_id, due_date, tags)
       select 'task ' || n, 'seeded by pnpm bench', (array['todo','in_progress','done'])[1 + n % 3],
              (array['low','medium','high'])[1 + n % 3], $1, $2, now() + n * interval '1 hour',
              array['bench', 'seed']
       from generate_series(1, $3::int) as n returning id)
     select min(id)::int as first from inserted`,
    [userId, projectId, count],
  )
  await tasksDb.pool.query('analyze tasks')
  return rows[0]?.first as number
}

/** Connections each service holds on its database right now (pg_stat_activity, by application_name). */
async function connections(): Promise<Record<string, number>> {
  const { rows } = await admin.pool.query<{ name: string; n: number }>(
    `select coalesce(nullif(application_name, ''), datname) as name, count(*)::int as n
     from pg_stat_activity where datname like 'bench_%' and application_name <> 'pnpm-bench' group by 1`,
  )
  return Object.fromEntries(rows.map((r) => [r.name, r.n]))
}

function idleRss(pids: Record<string, number>) {
  return mb(Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, statusKb(pid, 'VmRSS')])))
}

const runFigure = async (
  figure: string,
  args: () => string[],
  pids: Record<string, number>,
  cpuOf?: number,
  roundCount = ROUNDS,
) => {
  await wrk(args().map((a) => (a.startsWith('-d') ? `-d${WARMUP_S}s` : a)))
  const rounds = []
  for (let round = 1; round <= roundCount; round++) {
    const cpuBefore = cpuOf ? cpuSeconds(cpuOf) : 0
    const servicesCpuBefore = Object.values(pids).reduce((sum, pid) => sum + cpuSeconds(pid), 0)
    const postgresCpuBefore = cpuSeconds(postmaster)
    const perProcessBefore = Object.fromEntries(
      Object.entries(pids).map(([name, pid]) => [name, cpuSeconds(pid)]),
    )
    const threadsBefore = threadCpu(Object.values(pids))
    let connectionPeak: Record<string, number> = {}
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        const now = await connections()
        for (const [k, v] of Object.entries(now)) connectionPeak[k] = Math.max(connectionPeak[k] ?? 0, v)
        await sleep(500)
      }
    })()
    const { result, peakRssMb } = await watchRss(pids, () => wrk(args()))
    sampling = false
    await sampler
    const servicesCpu = Object.values(pids).reduce((sum, pid) => sum + cpuSeconds(pid), 0) - servicesCpuBefore
    const row = {
      ...result,
      ...(cpuOf
        ? {
            proxy_cpu_us_per_request: +(((cpuSeconds(cpuOf) - cpuBefore) * 1e6) / result.requests).toFixed(1),
          }
        : {}),
      services_cpu_us_per_request: +((servicesCpu * 1e6) / result.requests).toFixed(1),
      // Every backend of the cluster (the bench's own connection sampler included, a few queries a second).
      postgres_cpu_us_per_request: +(
        ((cpuSeconds(postmaster) - postgresCpuBefore) * 1e6) /
        result.requests
      ).toFixed(1),
      cpu_us_per_request_by_process: Object.fromEntries(
        Object.entries(pids).map(([name, pid]) => [
          name,
          +(((cpuSeconds(pid) - (perProcessBefore[name] ?? 0)) * 1e6) / result.requests).toFixed(1),
        ]),
      ),
      // The services' threads by name (the main thread is "node", V8's GC helpers "V8Worker", libuv's pool
      // "libuv-worker"): where CPU goes that a profile of the main thread does not show.
      cpu_us_per_request_by_thread: Object.fromEntries(
        Object.entries(threadCpu(Object.values(pids))).map(([name, seconds]) => [
          name,
          +(((seconds - (threadsBefore[name] ?? 0)) * 1e6) / result.requests).toFixed(1),
        ]),
      ),
      peak_rss_mb: peakRssMb,
      peak_db_connections: connectionPeak,
    }
    log(
      `${figure} #${round}: ${row.rps} req/s, p50 ${row.p50_ms} ms, p99 ${row.p99_ms} ms, non-2xx ${row.non_2xx}, services CPU ${row.services_cpu_us_per_request} µs/request, PostgreSQL ${row.postgres_cpu_us_per_request} µs/request ${JSON.stringify(row.cpu_us_per_request_by_process)}`,
    )
    if (row.non_2xx > 0) {
      loud(`${figure}: ${row.non_2xx} responses were not 2xx: ${JSON.stringify(row.statuses ?? {})}`)
    }
    rounds.push(row)
    connectionPeak = {}
  }
  return rounds
}

/** A user, a project they own, tasks in it: through the gateway, as a client would (tasks seeded in SQL). */
async function populate(gw: string, label: string, ranges = 7) {
  // A user, a project they own, tasks in it: through the gateway, as a client would.
  const email = `bench-${label.replace(/\W/g, '')}@example.com`
  const password = 'bench-password-long-enough'
  const user = await call(`${gw}/users`, {
    method: 'POST',
    body: JSON.stringify({ email, password, name: 'Bench' }),
    expect: 201,
  })
  const { access_token: token } = await call(`${gw}/auth/token`, {
    method: 'POST',
    body: JSON.stringify({ email, password }),
    expect: 200,
  })
  const auth = { authorization: `Bearer ${token}` }
  const project = await call(`${gw}/projects`, {
    method: 'POST',
    headers: auth,
    body: JSON.stringify({ name: `bench ${label}` }),
    expect: 201,
  })
  // Ranges of tasks: 0 for reads, 1-3 for updates (warm-up, round 1, round 2), 4-6 for the mix (`ranges` 1: reads only).
  const first = await seedTasks(user.id, project.id, TASKS_PER_RANGE * ranges)
  const range = (i: number) => [String(first + i * TASKS_PER_RANGE), String(TASKS_PER_RANGE)]
  const readOne = `/tasks/${first}`
  // The owner's membership reaches the task-service's read model through NATS (projects.member.added).
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(`${gw}${readOne}`, { headers: auth })
    await response.body?.cancel()
    if (response.status === 200) break
    if (attempt >= 300)
      throw new Error(`GET ${readOne}: ${response.status} after 30 s (membership not replicated)`)
    await sleep(100)
  }
  const listPath = `/tasks?project_id=${project.id}&status=todo&sort=-created_at&limit=50`
  const listed = await call(`${gw}${listPath}`, { headers: auth, expect: 200 })
  if (process.env.BENCH_EXPLAIN) {
    // The list's statement as the task-service sends it (pg_stat_statements is not loaded): its plan and buffers.
    const { rows } = await tasksDb.pool.query(
      `explain (analyze, buffers) select * from tasks where project_id in (select project_id from project_members where user_id = $1)
       and project_id = $2 and status = $3 order by created_at desc, id desc limit $4`,
      [user.id, project.id, 'todo', 51],
    )
    log(`EXPLAIN of the list:\n${rows.map((row) => row['QUERY PLAN']).join('\n')}`)
  }
  if (!Array.isArray(listed) || listed.length !== 50) throw new Error('the filtered list is not a page of 50')
  const body = taskBody(user.id, project.id, 'created by pnpm bench')
  // Lua arguments: token, update range, read range, body, list path.
  const lua = (updateRange: number) => [token, ...range(updateRange), ...range(0), body, listPath]

  return { token, auth, readOne, lua }
}

async function phase(label: string, nodeOptions: string, full: boolean) {
  log(`phase "${label}": starting the system with NODE_OPTIONS="${nodeOptions}"`)
  const system = await startSystem(nodeOptions)
  const pids: Record<string, number> = {
    'user-service': system.user.pid,
    'project-service': system.project.pid,
    'task-service': system.task.pid,
    gateway: system.gateway.pid,
  }
  const out: Record<string, any> = {
    node_options: nodeOptions,
    ready_ms: Object.fromEntries(
      [system.user, system.project, system.task, system.gateway].map((s) => [s.name, s.readyMs]),
    ),
    services_ready_ms: system.wholeMs,
  }

  const gw = system.gateway.url
  const { token, auth, readOne, lua } = await populate(gw, label)

  await sleep(smoke ? 500 : 3000)
  out.idle_rss_mb = idleRss(pids)
  out.idle_postgres_pss_mb = postgresPssMb(postmaster)
  out.idle_db_connections = await connections()
  log(`idle RSS (MB): ${JSON.stringify(out.idle_rss_mb)}, PostgreSQL PSS ${out.idle_postgres_pss_mb} MB`)

  if (!tools.wrk) {
    skip(`${label}: load figures`, 'wrk is missing (apt-get install wrk)')
    return { system, out }
  }
  const figures: Record<string, unknown> = {}
  out.figures = figures
  const bearer = { Authorization: `Bearer ${token}` }
  if (full && only === null) {
    // Gateway overhead: the same GET, directly, through the gateway, through nginx.
    const open = await startService(
      'task-service (AUTH_MODE=disabled)',
      'services/task-service/dist/server.js',
      {
        DATABASE_URL: dbUrl('bench_tasks'),
        AUTH_MODE: 'disabled',
        RATE_LIMIT_ENABLED: 'false',
      },
      PORTS.taskOpen,
      nodeOptions,
    )
    figures['GET /tasks/{id}: task-service directly, no auth'] = await runFigure(
      'direct, no auth',
      () => wrkArgs(`${open.url}${readOne}`, DURATION_S),
      { 'task-service (AUTH_MODE=disabled)': open.pid },
    )
    await stop(open.child)
    figures['GET /tasks/{id}: task-service directly, auth on'] = await runFigure(
      'direct, auth on',
      () => wrkArgs(`${system.task.url}${readOne}`, DURATION_S, undefined, [], bearer),
      pids,
    )
    figures['GET /tasks/{id}: through the gateway, auth on'] = await runFigure(
      'gateway',
      () => wrkArgs(`${gw}${readOne}`, DURATION_S, undefined, [], bearer),
      pids,
      system.gateway.pid,
    )
    if (!tools.nginx) skip('nginx in front of the task-service', 'nginx is missing (apt-get install nginx)')
    else {
      const proxy = nginxProxy(PORTS.task, PORTS.nginx)
      const [command, args] = pin(SERVER_CPU, 'nginx', proxy.args)
      const nginx = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'] })
      running.push(nginx)
      for (let i = 0; i < 100; i++) {
        try {
          const r = await fetch(`http://127.0.0.1:${PORTS.nginx}${readOne}`, { headers: auth })
          await r.body?.cancel()
          if (r.status === 200) break
        } catch {
          // not listening yet
        }
        await sleep(50)
      }
      figures['GET /tasks/{id}: through nginx, auth on'] = await runFigure(
        'nginx',
        () => wrkArgs(`http://127.0.0.1:${PORTS.nginx}${readOne}`, DURATION_S, undefined, [], bearer),
        pids,
        nginx.pid as number,
      )
      await stop(nginx)
      rmSync(proxy.dir, { recursive: true, force: true })
    }
  }
  if (full) {
    // The task API through the gateway with authentication on.
    if (wanted('get'))
      figures['API: GET /tasks/{id}'] = await runFigure(
        'API get',
        () => wrkArgs(gw, DURATION_S, luaFile.get, lua(1)),
        pids,
      )
    if (wanted('list'))
      figures['API: list with filters (page of 50)'] = await runFigure(
        'API list',
        () => wrkArgs(gw, DURATION_S, luaFile.list, lua(1)),
        pids,
      )
    if (wanted('create'))
      figures['API: create'] = await runFigure(
        'API create',
        () => wrkArgs(gw, DURATION_S, luaFile.create, lua(1)),
        pids,
      )
    let updateRange = 1
    if (wanted('update'))
      figures['API: update with If-Match'] = await runFigure(
        'API update',
        // Warm-up and each round start on fresh tasks (version 1).
        () => wrkArgs(gw, DURATION_S, luaFile.update, lua(updateRange++)),
        pids,
      )
  }
  let mixRange = 1 // warm-up, round 1, round 2: ranges 4, 5, 6
  if (wanted('mix'))
    figures['API: mix (80% reads)'] = await runFigure(
      'API mix',
      () => wrkArgs(gw, DURATION_S, luaFile.mix, lua(3 + mixRange++)),
      pids,
    )
  return { system, out }
}

// ---------------------------------------------------------------------------------------------------
// Tracing cost: CPU per request through the gateway (every service's CPU over the requests) with the services
// started without the kit's tracing entry, with it and no endpoint (tracing off, as the image runs them),
// and exporting OTLP/HTTP (protobuf, the SDK's default batching) to a local sink at 10 % and 100 %. The four
// systems run side by side and the load goes to each in turn (none, off, 10 %, 100 %, then back: BENCH_TRACING_PASSES
// passes), one run per setting and pass, so drift of the shared machine is not read as a cost of one setting.

/** An OTLP/HTTP trace endpoint that accepts every export and keeps only counts, by request path. */
async function otlpSink() {
  const byPath = new Map<string, { exports: number; bytes: number }>()
  const server = createServer((req, res) => {
    const counts = byPath.get(req.url ?? '') ?? { exports: 0, bytes: 0 }
    byPath.set(req.url ?? '', counts)
    req.on('data', (chunk: Buffer) => {
      counts.bytes += chunk.length
    })
    req.on('end', () => {
      counts.exports++
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
    })
  })
  const port = await freePort()
  await new Promise<void>((done) => server.listen(port, '127.0.0.1', done))
  return { url: `http://127.0.0.1:${port}`, byPath, close: () => new Promise((done) => server.close(done)) }
}

async function tracingCost() {
  const sink = await otlpSink()
  const instrument = ['--import', join(root, 'packages/service-kit/dist/instrument.js')]
  const exporting = (ratio: string) => ({
    execArgv: instrument,
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: ratio,
    },
  })
  const settings: [string, Launch][] = [
    ['no tracing entry', {}],
    ['tracing off (entry, no endpoint)', { execArgv: instrument }],
    ['on, 10 % sampled', exporting('0.1')],
    ['on, 100 % sampled', exporting('1')],
  ]
  type Setting = { runs: { services_cpu_us_per_request: number }[]; otlp_exports: number; otlp_mb: number }
  const out: Record<string, Setting> = Object.fromEntries(
    settings.map(([label]) => [label, { runs: [], otlp_exports: 0, otlp_mb: 0 }]),
  )
  const passes = smoke ? 1 : TRACING_PASSES
  const chosen = [...settings.entries()].filter(([index]) => TRACING_SETTINGS.includes(index))
  // Every setting's system runs the whole time, each on its own ports (the databases and NATS are shared; each
  // system has its own user, project and tasks), and the load moves from one to the next: the settings are
  // interleaved run by run, without a restart between them.
  type Running = Awaited<ReturnType<typeof startSystem>> & { token: string; readOne: string }
  const systems = new Map<number, Running>()
  try {
    for (const [index, [label, launch]] of chosen) {
      log(`tracing cost: starting the system "${label}"`)
      // Each setting exports to its own path of the sink, so its exports are counted apart.
      const env = launch.env?.OTEL_EXPORTER_OTLP_ENDPOINT
        ? { ...launch.env, OTEL_EXPORTER_OTLP_ENDPOINT: `${sink.url}/setting${index}` }
        : launch.env
      const execArgv = [
        ...(launch.execArgv ?? []),
        // A CPU profile of each service (written when it exits), for finding where a setting's CPU goes.
        // (after startSystem's own --cpu-prof-dir, so this one is the one Node keeps)
        ...(CPU_PROF_DIR ? [`--cpu-prof-dir=${join(CPU_PROF_DIR, `setting${index}`)}`] : []),
      ]
      const ports = {
        user: await freePort(),
        project: await freePort(),
        task: await freePort(),
        gateway: await freePort(),
      }
      const system = await startSystem('', { ...(env ? { env } : {}), execArgv, ports })
      systems.set(index, { ...system, token: '', readOne: '' })
      const { token, readOne } = await populate(system.gateway.url, `tracing ${index}`, 1)
      systems.set(index, { ...system, token, readOne })
    }
    for (let pass = 1; pass <= passes; pass++) {
      // Every other pass runs the settings in reverse (A B C D, D C B A): a drift of the machine over a pass then
      // weighs on every setting alike instead of always on the last one.
      const order = pass % 2 === 0 ? [...chosen].reverse() : chosen
      for (const [index, [label]] of order) {
        const system = systems.get(index) as Running
        const pids: Record<string, number> = {
          'user-service': system.user.pid,
          'project-service': system.project.pid,
          'task-service': system.task.pid,
          gateway: system.gateway.pid,
        }
        const runs = await runFigure(
          `tracing: ${label} (pass ${pass})`,
          () =>
            wrkArgs(`${system.gateway.url}${system.readOne}`, TRACING_DURATION_S, undefined, [], {
              Authorization: `Bearer ${system.token}`,
            }),
          pids,
          system.gateway.pid,
          1,
        )
        ;(out[label] as Setting).runs.push(...runs)
      }
    }
    // The SDK exports a batch when 512 spans are waiting or every 5 s: wait for the last ones.
    await sleep(6000)
    for (const [index, [label]] of chosen) {
      const counted = sink.byPath.get(`/setting${index}/v1/traces`)
      const setting = out[label] as Setting
      setting.otlp_exports = counted?.exports ?? 0
      setting.otlp_mb = +((counted?.bytes ?? 0) / 1e6).toFixed(2)
    }
  } finally {
    for (const system of systems.values()) {
      for (const service of [system.gateway, system.task, system.project, system.user])
        await stop(service.child)
    }
    await sink.close()
  }
  const percent = (value: number, base: number) => +(((value - base) / base) * 100).toFixed(1)
  const cpuIn = (label: string, pass: number) =>
    (out[label] as Setting).runs[pass]?.services_cpu_us_per_request as number
  // The median of the runs: on a shared machine a run now and then costs far more than the others (another
  // process on the core), and the mean would follow it.
  const cpu = (label: string) => {
    const sorted = (out[label] as Setting).runs
      .map((run) => run.services_cpu_us_per_request)
      .sort((a, b) => a - b)
    const middle = sorted.length / 2
    const median =
      sorted.length % 2 === 1
        ? (sorted[Math.floor(middle)] as number)
        : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
    return +median.toFixed(1)
  }
  const labels = settings.map(([label]) => label) as [string, string, string, string]
  const [none, off, ten, all] = labels.map(cpu) as [number, number, number, number]
  // The same ratios within each pass: a cost that is real shows in every pass.
  const perPass = Array.from({ length: passes }, (_, pass) => ({
    off_vs_no_entry_percent: percent(cpuIn(labels[1], pass), cpuIn(labels[0], pass)),
    sampled_10_vs_off_percent: percent(cpuIn(labels[2], pass), cpuIn(labels[1], pass)),
    sampled_100_vs_off_percent: percent(cpuIn(labels[3], pass), cpuIn(labels[1], pass)),
  }))
  const summary = {
    services_cpu_us_per_request: { none, off, sampled_10: ten, sampled_100: all },
    off_vs_no_entry_percent: percent(off, none),
    sampled_10_vs_off_percent: percent(ten, off),
    sampled_100_vs_off_percent: percent(all, off),
    per_pass: perPass,
  }
  log(`tracing cost: ${JSON.stringify(summary)}`)
  if (!smoke && summary.off_vs_no_entry_percent > 2) loud('tracing off costs more than 2 % CPU per request')
  if (!smoke && summary.sampled_10_vs_off_percent > 10)
    loud('tracing at 10 % costs more than 10 % CPU per request')
  return { passes, settings: out, ...summary }
}

/**
 * The whole `pnpm start` (scripts/start, from the TypeScript sources through tsx), cold: a fresh data
 * directory, free ports. Time from spawning it to the gateway answering /health/ready, plus the
 * launcher's own per-step lines. Stopped with SIGTERM right after.
 */
async function timePnpmStart() {
  const dataDir = mkdtempSync(join(tmpdir(), 'task-manager-bench-start-'))
  const basePort = 28003
  const args = [
    '--import',
    'tsx',
    '--conditions=@task-manager/source',
    join(root, 'scripts/start/main.ts'),
    '--data-dir',
    dataDir,
    '--base-port',
    String(basePort),
    '--postgres-port',
    String(await freePort()),
  ]
  const started = performance.now()
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  running.push(child)
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  try {
    const deadline = Date.now() + 120_000
    for (;;) {
      if (child.exitCode !== null) throw new Error(`pnpm start exited early:\n${output.slice(-4000)}`)
      if (Date.now() > deadline) throw new Error(`pnpm start not ready after 120 s:\n${output.slice(-4000)}`)
      try {
        const response = await fetch(`http://127.0.0.1:${basePort + 3}/health/ready`)
        await response.body?.cancel()
        if (response.status === 200) break
      } catch {
        // not yet
      }
      await sleep(20)
    }
    const readyMs = Math.round(performance.now() - started)
    // The launcher prints its summary lines a moment after the gateway answers.
    for (let i = 0; i < 50 && !/services: all ready/.test(output); i++) await sleep(100)
    // biome-ignore lint/suspicious/noControlCharactersInRegex: strips the launcher's colour codes
    const plain = output.replace(/\x1b\[[0-9;]*m/g, '')
    const steps = {
      postgres_ms: Number(/PostgreSQL: ready in (\d+) ms/.exec(plain)?.[1] ?? Number.NaN),
      services_ms: Number(/services: all ready in (\d+) ms/.exec(plain)?.[1] ?? Number.NaN),
      per_service_ms: Object.fromEntries(
        [...plain.matchAll(/services: (\S+) ready on :\d+ in (\d+) ms/g)].map((m) => [m[1], Number(m[2])]),
      ),
    }
    log(`pnpm start: gateway ready ${readyMs} ms after spawning the launcher ${JSON.stringify(steps)}`)
    return { ready_ms: readyMs, ...steps }
  } finally {
    await stop(child)
    rmSync(dataDir, { recursive: true, force: true })
  }
}

try {
  const migrationsMs = await prepareDatabases()
  const phases: Record<string, unknown> = {}
  if (apiFigures) {
    const first = await phase('default', '', true)
    phases.default = first.out
    const { user, project, task, gateway } = first.system
    for (const service of [gateway, task, project, user]) await stop(service.child)
    if (only !== null) log(`BENCH_ONLY=${[...only].join(',')}: the default phase's task-API figures only`)
    else if (smoke) log('smoke: skipping the second memory setting')
    else {
      const second = await phase('tuned', NODE_OPTIONS_CANDIDATE, false)
      phases[NODE_OPTIONS_CANDIDATE] = second.out
      const { user, project, task, gateway } = second.system
      for (const service of [gateway, task, project, user]) await stop(service.child)
    }
    results.phases = phases
  }
  if (only === null || only.has('tracing')) {
    if (tools.wrk) results.tracing = await tracingCost()
    else skip('tracing cost', 'wrk is missing (apt-get install wrk)')
  }
  if (only === null) {
    try {
      results.pnpm_start = await timePnpmStart()
    } catch (error) {
      skip('the whole pnpm start', (error as Error).message.split('\n')[0] as string)
    }
  }
  results.postgres_ready_ms = postgresReadyMs
  results.migrations_ms = migrationsMs
} finally {
  for (const child of running) await stop(child)
  await tasksDb.close()
  await admin.close()
  await pgServer.stop()
  await nats.remove()
  rmSync(scratch, { recursive: true, force: true })
}

const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown'
const version = (command: string) => {
  try {
    return execFileSync('sh', ['-c', `${command} 2>&1 | head -1`], { encoding: 'utf8' }).trim()
  } catch {
    return null
  }
}
process.stdout.write(
  `${JSON.stringify(
    {
      when: new Date().toISOString(),
      smoke,
      machine: {
        cpu: cpuModel,
        cores: Number(execFileSync('nproc').toString().trim()),
        memory_mb: Math.round(statusKbFromMeminfo() / 1024),
        node: process.version,
        wrk: tools.wrk ? version('wrk -v') : null,
        nginx: tools.nginx ? version('nginx -v') : null,
      },
      settings: {
        duration_s: DURATION_S,
        warmup_s: WARMUP_S,
        rounds: ROUNDS,
        connections: CONNECTIONS,
        server_cpu: SERVER_CPU,
        load_cpu: LOAD_CPU,
        pinned: tools.taskset,
      },
      skipped,
      ...(only === null ? {} : { only: [...only] }),
      ...results,
    },
    null,
    2,
  )}\n`,
)

function statusKbFromMeminfo(): number {
  return Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0)
}
