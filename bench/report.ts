// Turns bench-results/db-read.json, system.json, memory.json and events.json into the tables of docs/benchmarks.md
// (between the bench:begin/bench:end markers; the hand-written analysis around them is kept) and the
// summary docs/benchmarks.json. Ratios are computed within one run.
//   node --import tsx bench/report.ts [--smoke]   (--smoke: check the results, write nothing)
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

const root = resolve(import.meta.dirname, '..')
const smoke = process.argv.includes('--smoke')
const command = process.env.BENCH_COMMAND ?? 'pnpm bench'
const dbRead = JSON.parse(readFileSync(join(root, 'bench-results/db-read.json'), 'utf8'))
const system = JSON.parse(readFileSync(join(root, 'bench-results/system.json'), 'utf8'))
// The memory-settings sweep (bench/memory.ts), when it was run: kept in the summary it is cited from.
const memoryPath = join(root, 'bench-results/memory.json')
const memorySweep = existsSync(memoryPath) ? JSON.parse(readFileSync(memoryPath, 'utf8')) : null
// The outbox's cost and the event latency (bench/events.ts).
const events = JSON.parse(readFileSync(join(root, 'bench-results/events.json'), 'utf8'))

interface Run {
  requests: number
  rps: number
  p50_ms: number
  p99_ms: number
  non_2xx: number
  proxy_cpu_us_per_request?: number
  services_cpu_us_per_request: number
  postgres_cpu_us_per_request?: number
  peak_rss_mb: Record<string, number>
  peak_db_connections: Record<string, number>
}

const problems: string[] = []
const phases = system.phases as Record<string, any>
const main = phases.default
const figures = (main?.figures ?? {}) as Record<string, Run[]>
for (const [phaseName, phase] of Object.entries(phases)) {
  for (const [name, runs] of Object.entries((phase.figures ?? {}) as Record<string, Run[]>)) {
    for (const run of runs) {
      if (!(run.requests > 0)) problems.push(`${phaseName}: ${name}: no requests completed`)
      if (run.non_2xx > 0) problems.push(`${phaseName}: ${name}: ${run.non_2xx} responses were not 2xx`)
    }
  }
}
for (const variant of dbRead.variants) {
  if (!(variant.best_cpu_us_per_query > 0)) problems.push(`db-read: ${variant.name}: no measurement`)
}

interface CreateRun {
  creates: number
  creates_per_second: number
  backlog_at_last_create: number
  drain_ms: number
  cpu_us_per_create: { node: number; postgres: number; nats: number; total: number }
}
interface LatencyRun {
  events: number
  rate_per_second: number
  applied_per_second: number
  p50_ms: number
  p90_ms: number
  p99_ms: number
  max_ms: number
  effect_rows: number
}
const outboxVariants = (events.outbox?.variants ?? {}) as Record<string, CreateRun[]>
const latencyRuns = (events.latency?.runs ?? []) as LatencyRun[]
if (Object.keys(outboxVariants).length !== 2) problems.push('events: outbox cost: no measurement')
for (const [name, runs] of Object.entries(outboxVariants)) {
  for (const run of runs) {
    const cpu = run.cpu_us_per_create
    if (!(run.creates > 0 && run.creates_per_second > 0 && cpu.node > 0 && cpu.total >= cpu.node))
      problems.push(`events: ${name}: no measurement`)
  }
}
if (!(typeof events.outbox?.cost_percent === 'number' && events.outbox.all_sent === true))
  problems.push('events: outbox cost: no measurement (or not every row was sent)')
if (latencyRuns.length === 0 || events.latency?.exactly_once !== true)
  problems.push('events: latency: no measurement (or not every event applied exactly once)')
for (const run of latencyRuns) {
  if (!(run.p50_ms > 0 && run.p50_ms <= run.p90_ms && run.p90_ms <= run.p99_ms && run.p99_ms <= run.max_ms))
    problems.push(
      `events: latency: no measurement (percentiles ${run.p50_ms}/${run.p90_ms}/${run.p99_ms}/${run.max_ms})`,
    )
  if (run.effect_rows !== run.events) problems.push('events: latency: no measurement (effects missing)')
}

const f1 = (n: number | null | undefined) => (n == null || Number.isNaN(n) ? '–' : n.toFixed(1))
const f2 = (n: number | null | undefined) => (n == null || Number.isNaN(n) ? '–' : n.toFixed(2))
const r0 = (n: number | null | undefined) => (n == null || Number.isNaN(n) ? '–' : Math.round(n).toString())
const both = (runs: Run[] | undefined, pick: (run: Run) => string) => (runs ?? []).map(pick).join(' / ')
const mean = (runs: Run[] | undefined, pick: (run: Run) => number | undefined) => {
  const values = (runs ?? []).map(pick).filter((v): v is number => typeof v === 'number')
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : Number.NaN
}
const rps = (name: string) => mean(figures[name], (run) => run.rps)

const lines: string[] = []
const push = (...more: string[]) => lines.push(...more)

push(
  `Measured ${system.when} with \`${command}\` on ${system.machine.cores} cores (${system.machine.cpu}), ` +
    `${system.machine.memory_mb} MB RAM, Node ${system.machine.node}` +
    `${system.machine.wrk ? `, ${system.machine.wrk.split(' Copyright')[0]}` : ''}` +
    `${system.machine.nginx ? `, ${system.machine.nginx}` : ''}. ` +
    `Servers pinned to CPU ${system.settings.server_cpu}, wrk to CPU ${system.settings.load_cpu}` +
    `${system.settings.pinned ? '' : ' (taskset missing: NOT pinned)'}; ` +
    `wrk \`-t1 -c${system.settings.connections}\`, ${system.settings.warmup_s} s warm-up, ` +
    `then ${system.settings.rounds} runs of ${system.settings.duration_s} s each (both shown, "run 1 / run 2").`,
  '',
)
if ((system.skipped ?? []).length > 0) {
  push('**Skipped in this run:**', '', ...system.skipped.map((s: string) => `- ${s}`), '')
}

// Database read path
push(
  '### Task-service database path: one task by id',
  '',
  `\`bench/db-read.ts\`: ${dbRead.calls} reads per run at concurrency ${dbRead.concurrency} over ` +
    `${dbRead.tasks} tasks, ${dbRead.rounds} runs, Node CPU (user + system, this process only) per query.`,
  '',
  '| Variant | Node CPU µs / query (run 1 / run 2) | best vs raw pg named | queries/s (run 1 / run 2) |',
  '| --- | ---: | ---: | ---: |',
)
for (const v of dbRead.variants) {
  push(
    `| ${v.name} | ${v.runs.map((r: any) => f1(r.cpu_us_per_query)).join(' / ')} | ${f2(v.cpu_vs_raw_pg_named)}× | ${v.runs.map((r: any) => r0(r.queries_per_second)).join(' / ')} |`,
  )
}
push('')

// Gateway overhead
const direct = 'GET /tasks/{id}: task-service directly, no auth'
const directAuth = 'GET /tasks/{id}: task-service directly, auth on'
const viaGateway = 'GET /tasks/{id}: through the gateway, auth on'
const viaNginx = 'GET /tasks/{id}: through nginx, auth on'
push(
  '### Gateway overhead: the same GET, directly and through a proxy',
  '',
  '| Path | req/s (run 1 / run 2) | p50 ms | p99 ms | proxy CPU µs / request | all services CPU µs / request | vs direct, no auth |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
)
for (const name of [direct, directAuth, viaGateway, viaNginx]) {
  const runs = figures[name]
  if (!runs) {
    push(`| ${name.replace('GET /tasks/{id}: ', '')} | skipped | | | | | |`)
    continue
  }
  push(
    `| ${name.replace('GET /tasks/{id}: ', '')} | ${both(runs, (r) => r0(r.rps))} | ${both(runs, (r) => f1(r.p50_ms))} | ${both(runs, (r) => f1(r.p99_ms))} | ${runs[0]?.proxy_cpu_us_per_request === undefined ? '' : both(runs, (r) => f1(r.proxy_cpu_us_per_request))} | ${both(runs, (r) => r0(r.services_cpu_us_per_request))} | ${f2(rps(name) / rps(direct))}× |`,
  )
}
push('')

// API
push(
  '### The task API through the gateway, authentication on',
  '',
  '| Request | req/s (run 1 / run 2) | p50 ms | p99 ms | all services CPU µs / request | PostgreSQL CPU µs / request | non-2xx |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
)
const apiFigures = Object.keys(figures).filter((name) => name.startsWith('API: '))
for (const name of apiFigures) {
  const runs = figures[name] as Run[]
  push(
    `| ${name.slice(5)} | ${both(runs, (r) => r0(r.rps))} | ${both(runs, (r) => f1(r.p50_ms))} | ${both(runs, (r) => f1(r.p99_ms))} | ${both(runs, (r) => r0(r.services_cpu_us_per_request))} | ${runs[0]?.postgres_cpu_us_per_request === undefined ? '' : both(runs, (r) => r0(r.postgres_cpu_us_per_request as number))} | ${both(runs, (r) => String(r.non_2xx))} |`,
  )
}
push('')

// Cost
const services = ['user-service', 'project-service', 'task-service', 'gateway']
const phaseNames = Object.keys(phases)
const label = (name: string) => (name === 'default' ? 'Node defaults' : `\`${phases[name].node_options}\``)
push(
  '### Cost: memory, connections, start-up',
  '',
  `RSS in MB. "Under load" is the peak RSS sampled every 100 ms during the mixed load (both runs).`,
  '',
  `| Process | ${phaseNames.map((p) => `idle (${label(p)})`).join(' | ')} | ${phaseNames.map((p) => `under mixed load (${label(p)})`).join(' | ')} | ready ms (${phaseNames.map(label).join(' / ')}) |`,
  `| --- | ${phaseNames.map(() => '---:').join(' | ')} | ${phaseNames.map(() => '---:').join(' | ')} | ---: |`,
)
const peakUnderMix = (phase: any, service: string) =>
  Math.max(
    ...((phase.figures?.['API: mix (80% reads)'] ?? []) as Run[]).map((r) => r.peak_rss_mb[service] ?? 0),
  )
for (const service of services) {
  push(
    `| ${service} | ${phaseNames.map((p) => f1(phases[p].idle_rss_mb[service])).join(' | ')} | ${phaseNames.map((p) => f1(peakUnderMix(phases[p], service))).join(' | ')} | ${phaseNames.map((p) => r0(phases[p].ready_ms[service])).join(' / ')} |`,
  )
}
const idleTotal = (phase: any) =>
  services.reduce((sum, s) => sum + (phase.idle_rss_mb[s] ?? 0), 0) + (phase.idle_postgres_pss_mb ?? 0)
push(
  `| PostgreSQL (PSS of all its processes) | ${phaseNames.map((p) => f1(phases[p].idle_postgres_pss_mb)).join(' | ')} | ${phaseNames.map(() => '').join(' | ')} | ${r0(system.postgres_ready_ms)} (embedded, incl. initdb) |`,
  `| **whole local system, idle** | ${phaseNames.map((p) => `**${f1(idleTotal(phases[p]))}**`).join(' | ')} | ${phaseNames.map(() => '').join(' | ')} | four services one after another: ${phaseNames.map((p) => r0(phases[p].services_ready_ms)).join(' / ')}; migrations ${r0(system.migrations_ms)} |`,
  '',
)
const start = system.pnpm_start
push(
  start
    ? `The whole \`pnpm start\`, cold (fresh data directory: initdb, databases and roles, migrations, the four ` +
        `services from their TypeScript sources through tsx, started together): gateway ready ` +
        `**${r0(start.ready_ms)} ms** after spawning the launcher; its own steps: PostgreSQL ready in ` +
        `${r0(start.postgres_ms)} ms, the services ready ${r0(start.services_ms)} ms after they were started ` +
        `(${Object.entries(start.per_service_ms as Record<string, number>)
          .map(([k, v]) => `${k} ${v} ms`)
          .join(', ')}).`
    : 'The whole `pnpm start`: not measured in this run (see "Skipped").',
  '',
)
const mixRuns = (figures['API: mix (80% reads)'] ?? []) as Run[]
const listRuns = (figures['API: list with filters (page of 50)'] ?? []) as Run[]
const connectionPeak: Record<string, number> = {}
for (const run of mixRuns) {
  for (const [k, v] of Object.entries(run.peak_db_connections))
    connectionPeak[k] = Math.max(connectionPeak[k] ?? 0, v)
}
push(
  `Database connections (pg_stat_activity, by application): idle ${JSON.stringify(main?.idle_db_connections ?? {})}, ` +
    `peak under the mixed load ${JSON.stringify(connectionPeak)}.`,
  '',
)
if (phaseNames.length > 1) {
  const other = phaseNames[1] as string
  const mix = (p: string) => phases[p].figures?.['API: mix (80% reads)'] as Run[] | undefined
  push(
    `Mixed load with ${label(other)}: ${both(mix(other), (r) => r0(r.rps))} req/s, ` +
      `${both(mix(other), (r) => r0(r.services_cpu_us_per_request))} µs CPU per request across the services ` +
      `(Node defaults: ${both(mix('default'), (r) => r0(r.rps))} req/s, ${both(mix('default'), (r) => r0(r.services_cpu_us_per_request))} µs).`,
    '',
  )
}

if (memorySweep) {
  push(
    '### V8 memory settings: the task-service alone under load',
    '',
    '`bench/memory.ts`: the task-service (AUTH_MODE=disabled) under 60 % GET by id, 20 % list, 20 % create ' +
      'from wrk, 32 connections; settings interleaved. Heap figures from its own `/metrics` after the load.',
    '',
    '| NODE_OPTIONS | idle RSS MB | peak RSS MB under load | heap used / total after load MB | req/s | CPU µs / request |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...memorySweep.rows.map(
      (row: Record<string, number | string>) =>
        `| \`${row.node_options}\` | ${f1(row.idle_rss_mb as number)} | ${f1(row.peak_rss_mb as number)} | ${f1(row.after_heap_used_mb as number)} / ${f1(row.after_heap_total_mb as number)} | ${r0(row.rps as number)} | ${f1(row.cpu_us_per_request as number)} |`,
    ),
    '',
  )
}

// Tracing cost (bench/system.ts tracingCost): the same GET through the gateway, four ways of starting the services.
const tracing = system.tracing as
  | {
      settings: Record<string, { runs: Run[]; otlp_exports: number; otlp_mb: number }>
      off_vs_no_entry_percent: number
      sampled_10_vs_off_percent: number
      sampled_100_vs_off_percent: number
      per_pass?: {
        off_vs_no_entry_percent: number
        sampled_10_vs_off_percent: number
        sampled_100_vs_off_percent: number
      }[]
    }
  | undefined
if (tracing) {
  // The median of a setting's runs, as bench/system.ts summarises them.
  const cpuOf = (runs: Run[]) => {
    const sorted = runs.map((r) => r.services_cpu_us_per_request).sort((a, b) => a - b)
    const middle = sorted.length / 2
    return sorted.length % 2 === 1
      ? (sorted[Math.floor(middle)] as number)
      : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
  }
  const offCpu = cpuOf(tracing.settings['tracing off (entry, no endpoint)']?.runs ?? [])
  push(
    '### Tracing cost',
    '',
    'GET /tasks/{id} through the gateway with auth on, 32 connections; CPU of all four services per request. The ' +
      'four systems run side by side and the load goes to each in turn (none, off, 10 %, 100 %, then back), one run ' +
      'per setting and pass; the figure is the median of the runs. Exporting goes to a local OTLP/HTTP sink ' +
      '(protobuf, default batching). `node --conditions=@task-manager/source --import tsx bench/system.ts --only ' +
      'tracing` runs this figure alone.',
    '',
    '| Services started | req/s (runs) | services CPU µs/request (runs) | median | vs tracing off | OTLP exports (MB) |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...Object.entries(tracing.settings).map(([name, setting]) => {
      const cpu = cpuOf(setting.runs)
      const delta = ((cpu - offCpu) / offCpu) * 100
      return `| ${name} | ${both(setting.runs, (r) => r0(r.rps))} | ${both(setting.runs, (r) => f1(r.services_cpu_us_per_request))} | ${f1(cpu)} | ${delta >= 0 ? '+' : ''}${f1(delta)} % | ${setting.otlp_exports} (${f2(setting.otlp_mb)}) |`
    }),
    '',
    ...(tracing.per_pass
      ? [
          `Within each pass (pass 1 / pass 2 …): off against no entry ${tracing.per_pass.map((p) => `${f1(p.off_vs_no_entry_percent)} %`).join(' / ')}; ` +
            `10 % against off ${tracing.per_pass.map((p) => `${f1(p.sampled_10_vs_off_percent)} %`).join(' / ')}; ` +
            `100 % against off ${tracing.per_pass.map((p) => `${f1(p.sampled_100_vs_off_percent)} %`).join(' / ')}.`,
          '',
        ]
      : []),
  )
  for (const [name, setting] of Object.entries(tracing.settings)) {
    for (const run of setting.runs) {
      if (!(run.requests > 0)) problems.push(`tracing: ${name}: no requests completed`)
      if (run.non_2xx > 0) problems.push(`tracing: ${name}: ${run.non_2xx} responses were not 2xx`)
    }
  }
}

// Domain events (bench/events.ts)
const bothRuns = <R>(runs: R[], pick: (run: R) => string) => runs.map(pick).join(' / ')
push(
  '### Domain events: the outbox on a create, and end-to-end latency',
  '',
  `\`bench/events.ts\`: the project-service's create (project + owner membership in one transaction) at ` +
    `concurrency ${events.outbox?.concurrency}, ${events.outbox?.creates} creates per run, without and with the ` +
    `outbox (its relay publishing to JetStream during the run, which ends when every row is sent), interleaved, ` +
    `${events.outbox?.rounds} runs; CPU per create of this process, PostgreSQL and nats-server, all pinned to CPU ${events.cpu}` +
    `${events.pinned ? '' : ' (taskset missing: NOT pinned)'}.`,
  '',
  '| Create | Node CPU µs (run 1 / run 2) | PostgreSQL CPU µs | nats-server CPU µs | total CPU µs | creates/s | relay backlog at the last commit (rows, ms to send) |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...Object.entries(outboxVariants).map(
    ([name, runs]) =>
      `| ${name} | ${bothRuns(runs, (r) => f1(r.cpu_us_per_create.node))} | ${bothRuns(runs, (r) => f1(r.cpu_us_per_create.postgres))} | ${bothRuns(runs, (r) => f1(r.cpu_us_per_create.nats))} | ${bothRuns(runs, (r) => f1(r.cpu_us_per_create.total))} | ${bothRuns(runs, (r) => r0(r.creates_per_second))} | ${bothRuns(runs, (r) => `${r.backlog_at_last_create}, ${r.drain_ms}`)} |`,
  ),
  '',
  `The outbox costs **${f1(events.outbox?.cost_percent)} %** of a create's total CPU ` +
    `(per run: ${(events.outbox?.cost_percent_per_round ?? []).map((p: number) => `${f1(p)} %`).join(' / ')}; ` +
    `${events.outbox?.events_recorded} events recorded, all sent, ${events.outbox?.stream_messages} in the stream).`,
  '',
  `End-to-end latency, the producer's COMMIT returning → the consumer's transaction (the task-service's ` +
    `membership upsert and its inbox row) committed, creates at ${events.latency?.rate_per_second}/s (open loop), ` +
    `${events.latency?.events} events per run:`,
  '',
  '| Run | events | created/s | applied/s | p50 ms | p90 ms | p99 ms | max ms |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...latencyRuns.map(
    (r, i) =>
      `| ${i + 1} | ${r.events} | ${r0(r.rate_per_second)} | ${r0(r.applied_per_second)} | ${f1(r.p50_ms)} | ${f1(r.p90_ms)} | ${f1(r.p99_ms)} | ${f1(r.max_ms)} |`,
  ),
  '',
  `Every event applied exactly once: ${events.latency?.effect_rows} effect rows and ${events.latency?.inbox_rows} ` +
    `inbox rows for ${events.latency?.warmup_events + events.latency?.rounds * events.latency?.events} events (warm-up included).`,
  '',
)

// Targets
const gatewayCpu = mean(figures[viaGateway], (r) => r.proxy_cpu_us_per_request)
const nginxRatio = rps(viaGateway) / rps(viaNginx)
const authRatio = rps(viaGateway) / rps(direct)
const named = dbRead.variants.find((v: any) => v.name.startsWith('raw pg, named'))
const after = dbRead.variants.find((v: any) => v.name.startsWith('TaskRepository.findById'))
const maxPeak = (p: string) => Math.max(...services.map((s) => peakUnderMix(phases[p], s)))
const verdict = (ok: boolean) => (ok ? 'met' : '**missed**')
/**
 * A tracing target judged on the median over the interleaved passes, and "met" only when every pass agrees: a
 * median under the bound with passes on both sides of it is this machine's noise, not a measured cost.
 */
function tracingTarget(
  figures: NonNullable<typeof tracing>,
  label: string,
  key: 'off_vs_no_entry_percent' | 'sampled_10_vs_off_percent',
  bound: number,
): string {
  const median = figures[key]
  const passes = (figures.per_pass ?? []).map((pass) => pass[key])
  const spread = passes.length ? ` (passes ${f1(Math.min(...passes))} to ${f1(Math.max(...passes))} %)` : ''
  const judged =
    median > bound
      ? verdict(false)
      : passes.every((p) => p <= bound)
        ? verdict(true)
        : 'not shown: within the noise'
  return `| ${label} | ${f1(median)} %${spread} | ${judged} |`
}
push(
  '### Targets in this run',
  '',
  '| Target | Measured | |',
  '| --- | ---: | --- |',
  // Judged by the gateway's own benchmark: here the real task-service shares its core and inflates every figure.
  `| gateway CPU per proxied request ≤ 55 µs | ${f1(gatewayCpu)} µs under this load | judged in [benchmarks-gateway.md](benchmarks-gateway.md) |`,
  `| gateway throughput ≥ 0.5× nginx | ${f2(nginxRatio)}× | ${verdict(nginxRatio >= 0.5)} |`,
  `| GET by id via gateway with auth ≥ 0.7× direct without auth | ${f2(authRatio)}× | ${verdict(authRatio >= 0.7)} |`,
  // The list path's targets (domain events, the membership read model): against the figures of the run when they
  // were set (docs/benchmarks.md at 47e72c0: list 605 req/s and 1623 µs, mix 434 req/s, run 1).
  `| filtered list page of 50 ≤ 500 µs CPU across the services per request | ${both(listRuns, (r) => r0(r.services_cpu_us_per_request))} µs | ${verdict(mean(listRuns, (r) => r.services_cpu_us_per_request) <= 500)} |`,
  `| filtered list ≥ 3× 605 req/s (1815) | ${both(listRuns, (r) => r0(r.rps))} req/s | ${verdict(mean(listRuns, (r) => r.rps) >= 1815)} |`,
  `| mix ≥ 2× 434 req/s (868) | ${both(mixRuns, (r) => r0(r.rps))} req/s | ${verdict(mean(mixRuns, (r) => r.rps) >= 868)} |`,
  `| task read by id ≤ 1.2× raw pg (Node CPU) | ${f2(after?.best_cpu_us_per_query / named?.best_cpu_us_per_query)}× (${f1(after?.best_cpu_us_per_query)} vs ${f1(named?.best_cpu_us_per_query)} µs) | ${verdict(after?.best_cpu_us_per_query / named?.best_cpu_us_per_query <= 1.2)} |`,
  ...phaseNames.map(
    (p) =>
      `| each Node service ≤ 120 MB RSS under the mix (${label(p)}) | max ${f1(maxPeak(p))} MB | ${verdict(maxPeak(p) <= 120)} |`,
  ),
  ...phaseNames.map(
    (p) =>
      `| whole local system idle ≤ 600 MB (${label(p)}) | ${f1(idleTotal(phases[p]))} MB | ${verdict(idleTotal(phases[p]) <= 600)} |`,
  ),
  ...(tracing
    ? [
        tracingTarget(
          tracing,
          'tracing off costs ≤ 2 % CPU per request (against no tracing entry)',
          'off_vs_no_entry_percent',
          2,
        ),
        tracingTarget(
          tracing,
          'tracing on at 10 % sampling costs ≤ 10 % CPU per request (against off)',
          'sampled_10_vs_off_percent',
          10,
        ),
        `| tracing on at 100 % sampling: reported | ${f1(tracing.sampled_100_vs_off_percent)} % | reported |`,
      ]
    : []),
  `| the outbox's cost on a create (relay running) ≤ ${events.outbox?.target_percent} % over a create without it (all CPU) | ${f1(events.outbox?.cost_percent)} % | ${verdict(events.outbox?.cost_percent <= events.outbox?.target_percent)} |`,
  `| end-to-end event latency at ${events.latency?.rate_per_second}/s: reported | p50 ${bothRuns(latencyRuns, (r) => f1(r.p50_ms))} ms, p99 ${bothRuns(latencyRuns, (r) => f1(r.p99_ms))} ms | reported |`,
  ...phaseNames.map(
    (p) =>
      `| each service ready ≤ 1 s after its database is reachable (${label(p)}) | max ${r0(Math.max(...services.map((s) => phases[p].ready_ms[s])))} ms | ${verdict(Math.max(...services.map((s) => phases[p].ready_ms[s])) <= 1000)} |`,
  ),
  '',
)

const table = lines.join('\n')
if (problems.length > 0) {
  process.stderr.write(`[bench] problems in the results:\n${problems.map((p) => `  - ${p}`).join('\n')}\n`)
}
if (smoke) {
  process.stderr.write(
    `[bench] smoke: results are complete${problems.length ? ' but see above' : ''}; docs untouched\n`,
  )
  process.stdout.write(`${table}\n`)
  process.exit(problems.some((p) => p.includes('no requests') || p.includes('no measurement')) ? 1 : 0)
}
const docPath = join(root, 'docs/benchmarks.md')
const doc = readFileSync(docPath, 'utf8')
const begin = '<!-- bench:begin (generated by bench/report.ts) -->'
const end = '<!-- bench:end -->'
const a = doc.indexOf(begin)
const b = doc.indexOf(end)
if (a === -1 || b === -1) throw new Error(`docs/benchmarks.md lacks the ${begin} … ${end} markers`)
writeFileSync(docPath, `${doc.slice(0, a + begin.length)}\n\n${table}\n${doc.slice(b)}`)
writeFileSync(
  join(root, 'docs/benchmarks.json'),
  `${JSON.stringify({ command, problems, db_read: dbRead, system, memory_sweep: memorySweep, events }, null, 2)}\n`,
)
process.stderr.write('[bench] wrote docs/benchmarks.md and docs/benchmarks.json\n')
