// Measures the membership lookup other services call on every task request.
//   node --import tsx --conditions=@task-manager/source bench/project-lookup.ts
// Starts its own embedded PostgreSQL (or uses BENCH_DATABASE_URL), seeds projects and members, then
// times (1) the query alone: named prepared statement vs the same SQL unprepared vs Kysely, and (2) the
// whole HTTP endpoint with real tokens. Every loop is bounded in count; the server listens on 127.0.0.1.
import type { AddressInfo } from 'node:net'
import { startTestIssuer } from '@task-manager/auth/testing'
import { createServer } from '@task-manager/service-kit'
import { startEmbeddedPostgres } from '@task-manager/testing'
import pg from 'pg'
import { Agent, request } from 'undici'
import projectApp, { identity } from '../services/project-service/src/app.js'
import { loadProjectServiceConfig } from '../services/project-service/src/config.js'

const PROJECTS = 2000
const MEMBERS_PER_PROJECT = 5
const QUERY_CALLS = 20_000
const HTTP_CALLS = 10_000
const CONCURRENCY = 16

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0
}

async function timed(calls: number, concurrency: number, once: (i: number) => Promise<unknown>) {
  const latencies: number[] = []
  let next = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < calls) {
        const i = next++
        const t = performance.now()
        await once(i)
        latencies.push(performance.now() - t)
      }
    }),
  )
  const seconds = (performance.now() - started) / 1000
  latencies.sort((a, b) => a - b)
  return {
    per_second: Math.round(calls / seconds),
    p50_ms: +percentile(latencies, 50).toFixed(3),
    p99_ms: +percentile(latencies, 99).toFixed(3),
  }
}

const external = process.env.BENCH_DATABASE_URL
const server = external ? undefined : await startEmbeddedPostgres()
const adminUrl = external ?? (server?.adminUrl as string)
const admin = new pg.Client({ connectionString: adminUrl })
await admin.connect()
const dbName = `bench_projects_${Date.now()}`
await admin.query(`create database ${dbName}`)
const url = new URL(adminUrl)
url.pathname = `/${dbName}`

const issuer = await startTestIssuer()
const config = loadProjectServiceConfig({
  DATABASE_URL: url.toString(),
  JWKS_URL: issuer.jwksUrl,
  LOG_LEVEL: 'warn',
  DATABASE_POOL_MAX: '10',
})
const app = createServer(identity, config)
await app.register(projectApp, { config })
await app.listen({ host: '127.0.0.1', port: 0 })
const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`

const seed = new pg.Client({ connectionString: url.toString() })
await seed.connect()
await seed.query(
  `insert into projects (name, created_by) select 'Project ' || g, 1 from generate_series(1, $1) g`,
  [PROJECTS],
)
await seed.query(
  `insert into project_members (project_id, user_id, role)
   select p.id, (p.id * 7 + m) % 5000 + 1, case when m = 0 then 'owner' else 'editor' end
   from projects p cross join generate_series(0, $1 - 1) m
   on conflict do nothing`,
  [MEMBERS_PER_PROJECT],
)
await seed.query('analyze')
const { rows: pairs } = await seed.query<{ project_id: number; user_id: number }>(
  'select project_id, user_id from project_members order by random() limit 1000',
)
const plan = await seed.query(
  'explain select user_id, role from project_members where project_id = $1 and user_id in ($2, $3)',
  [pairs[0]?.project_id, pairs[0]?.user_id, pairs[0]?.user_id],
)
await seed.end()

const pair = (i: number) => pairs[i % pairs.length] as { project_id: number; user_id: number }
const pool = new pg.Pool({ connectionString: url.toString(), max: 10 })
// Dropping the database at the end ends idle connections; that is expected here.
pool.on('error', () => {})
const text =
  'select "user_id", "role" from "project_members" where "project_id" = $1 and "user_id" in ($2, $3)'
const results: Record<string, unknown> = {
  rows: { projects: PROJECTS, members: PROJECTS * MEMBERS_PER_PROJECT },
  plan: plan.rows.map((row) => row['QUERY PLAN']),
}

// Warm both paths (connections open, statements prepared) before timing.
for (let i = 0; i < 200; i += 1) {
  const { project_id, user_id } = pair(i)
  await pool.query({ name: 'bench-roles', text, values: [project_id, user_id, user_id] })
  await pool.query(text, [project_id, user_id, user_id])
}
for (const concurrency of [1, CONCURRENCY]) {
  results[`query_prepared_c${concurrency}`] = await timed(QUERY_CALLS, concurrency, (i) => {
    const { project_id, user_id } = pair(i)
    return pool.query({ name: 'bench-roles', text, values: [project_id, user_id, user_id] })
  })
  results[`query_unprepared_c${concurrency}`] = await timed(QUERY_CALLS, concurrency, (i) => {
    const { project_id, user_id } = pair(i)
    return pool.query(text, [project_id, user_id, user_id])
  })
}

const agent = new Agent({ connections: CONCURRENCY })
const headersFor = new Map<number, Record<string, string>>()
for (const { user_id } of pairs) {
  if (!headersFor.has(user_id))
    headersFor.set(user_id, { authorization: `Bearer ${await issuer.sign({ sub: user_id })}` })
}
const lookup = async (i: number) => {
  const { project_id, user_id } = pair(i)
  const response = await request(`${base}/projects/${project_id}/members/${user_id}`, {
    headers: headersFor.get(user_id),
    dispatcher: agent,
  })
  await response.body.text()
  if (response.statusCode !== 200) throw new Error(`lookup answered ${response.statusCode}`)
}
for (let i = 0; i < 500; i += 1) await lookup(i)
results[`http_lookup_c${CONCURRENCY}`] = await timed(HTTP_CALLS, CONCURRENCY, lookup)

console.log(JSON.stringify(results, null, 2))

await agent.close()
await pool.end()
await app.close()
await issuer.close()
// Closed pools' backends may take a moment to go; give them that before dropping the database.
await new Promise((resolve) => setTimeout(resolve, 500))
await admin.query(`drop database ${dbName} with (force)`)
await admin.end()
await server?.stop()
