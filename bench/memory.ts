// Memory settings sweep: the task-service (the busiest process under the mixed load) under the same
// load with different V8 flags; peak RSS, the heap figures from its own /metrics, throughput and CPU.
//   node --import tsx bench/memory.ts ["--max-semi-space-size=2" ...]
// Embedded PostgreSQL, the service from dist/ pinned to CPU 0, wrk pinned to CPU 1, AUTH_MODE=disabled
// (memory of the data path, not of the token checks), 127.0.0.1 only, 8 s per setting.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createDatabase } from '@task-manager/service-kit'
import { freePort, startEmbeddedPostgres } from '@task-manager/testing'

const root = resolve(import.meta.dirname, '..')
const settings = process.argv.slice(2).length
  ? process.argv.slice(2)
  : ['', '--max-semi-space-size=1', '--max-semi-space-size=2', '--max-semi-space-size=4']
const SECONDS = Number(process.env.BENCH_DURATION_S ?? 8)
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim())
const log = (line: string) => process.stderr.write(`[memory] ${line}\n`)

const rssKb = (pid: number) =>
  Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0)
const cpuS = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

const scratch = mkdtempSync(join(tmpdir(), 'task-manager-memory-'))
const lua = join(scratch, 'mix.lua')
const body = JSON.stringify({
  title: 'memory sweep',
  description: 'x'.repeat(200),
  user_id: 1,
  project_id: 1,
  tags: ['bench'],
})
writeFileSync(
  lua,
  `math.randomseed(7)
request = function()
  local r = math.random()
  if r < 0.6 then return wrk.format("GET", "/tasks/" .. math.random(1, 2000), nil, nil)
  elseif r < 0.8 then return wrk.format("GET", "/tasks?project_id=1&status=todo&limit=50", nil, nil) end
  return wrk.format("POST", "/tasks", { ["Content-Type"] = "application/json" }, '${body}')
end
`,
)

const pg = await startEmbeddedPostgres()
const admin = createDatabase({ connectionString: pg.adminUrl, max: 1 })
const rows: Record<string, unknown>[] = []
let child: ChildProcess | undefined
try {
  await admin.pool.query('create database memory_tasks')
  const url = new URL(pg.adminUrl)
  url.pathname = '/memory_tasks'
  const env = { PATH: process.env.PATH ?? '', DATABASE_URL: url.toString(), AUTH_MODE: 'disabled' }
  execFileSync(process.execPath, [join(root, 'services/task-service/dist/migrate.js')], { env })
  const tasks = createDatabase({ connectionString: url.toString(), max: 1 })
  await tasks.pool.query(
    `insert into tasks (title, description, status, priority, user_id, project_id, tags)
     select 'task ' || n, 'seeded', (array['todo','in_progress','done'])[1 + n % 3], 'medium', 1, 1, array['a']
     from generate_series(1, 2000) as n`,
  )
  await tasks.close()

  for (const setting of settings) {
    const port = await freePort()
    child = spawn(
      'taskset',
      ['-c', '0', process.execPath, join(root, 'services/task-service/dist/server.js')],
      {
        env: {
          ...env,
          HOST: '127.0.0.1',
          PORT: String(port),
          LOG_LEVEL: 'warn',
          RATE_LIMIT_ENABLED: 'false',
          NODE_OPTIONS: setting,
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    )
    const base = `http://127.0.0.1:${port}`
    for (let i = 0; ; i++) {
      if (i > 600) throw new Error('task-service not ready')
      const ok = await fetch(`${base}/health/ready`).then(
        (r) => r.status === 200,
        () => false,
      )
      if (ok) break
      await sleep(50)
    }
    await sleep(2000)
    const pid = child.pid as number
    const idle = rssKb(pid)
    const idleMetrics = await fetch(`${base}/metrics`).then((r) => r.text())
    let peak = idle
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, rssKb(pid))
        await sleep(100)
      }
    })()
    const cpu0 = cpuS(pid)
    // Asynchronous, so the RSS sampler keeps running while wrk does.
    const wrk = spawn('taskset', ['-c', '1', 'wrk', '-t1', '-c32', `-d${SECONDS}s`, '-s', lua, base])
    let out = ''
    wrk.stdout.on('data', (chunk) => {
      out += chunk
    })
    await new Promise((done) => wrk.once('exit', done))
    const cpu = cpuS(pid) - cpu0
    sampling = false
    await sampler
    const metrics = await fetch(`${base}/metrics`).then((r) => r.text())
    const metric = (name: string, text = metrics) => {
      const match = new RegExp(`^${name}(?:\\{[^}]*\\})? ([\\d.e+]+)`, 'm').exec(text)
      return match ? +(Number(match[1]) / 2 ** 20).toFixed(1) : null
    }
    const requests = Number(/(\d+) requests in/.exec(out)?.[1])
    const row = {
      node_options: setting || '(defaults)',
      idle_rss_mb: +(idle / 1024).toFixed(1),
      idle_heap_used_mb: metric('nodejs_heap_size_used_bytes', idleMetrics),
      idle_heap_total_mb: metric('nodejs_heap_size_total_bytes', idleMetrics),
      peak_rss_mb: +(peak / 1024).toFixed(1),
      after_heap_used_mb: metric('nodejs_heap_size_used_bytes'),
      after_heap_total_mb: metric('nodejs_heap_size_total_bytes'),
      after_external_mb: metric('nodejs_external_memory_bytes'),
      rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]),
      cpu_us_per_request: +((cpu * 1e6) / requests).toFixed(1),
      non_2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    }
    log(JSON.stringify(row))
    rows.push(row)
    child.kill('SIGTERM')
    await new Promise((done) => child?.once('exit', done))
  }
} finally {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  await admin.close()
  await pg.stop()
  rmSync(scratch, { recursive: true, force: true })
}
process.stdout.write(
  `${JSON.stringify({ when: new Date().toISOString(), node: process.version, rows }, null, 2)}\n`,
)
