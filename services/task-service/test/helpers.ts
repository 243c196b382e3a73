import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { type App, createServer } from '@task-manager/service-kit'
import { freePort } from '@task-manager/testing'
import pg from 'pg'
import taskApp, { identity } from '../src/app.js'
import { loadTaskServiceConfig } from '../src/config.js'

export const validTask = {
  title: 'Write the release notes',
  description: 'For version 1.0',
  status: 'todo',
  priority: 'high',
  user_id: 1,
  project_id: 1,
  due_date: '2026-12-01T17:00:00Z',
  tags: ['docs', 'release'],
}

/** The task-service app on its own Fastify instance, for `app.inject` tests. */
export async function buildApp(databaseUrl: string, env: Record<string, string> = {}): Promise<App> {
  const config = loadTaskServiceConfig({
    DATABASE_URL: databaseUrl,
    LOG_LEVEL: 'silent',
    AUTH_MODE: 'disabled',
    RATE_LIMIT_ENABLED: 'false',
    ...env,
  })
  const app = createServer(identity, config)
  await app.register(taskApp, { config })
  await app.ready()
  return app
}

export interface ServiceProcess {
  url: string
  child: ChildProcess
  output: () => string
  exited: Promise<number | null>
}

const serverEntry = fileURLToPath(new URL('../src/server.ts', import.meta.url))

/** The real task-service as its own OS process (TypeScript sources through tsx), ready to serve. */
export async function startServiceProcess(env: Record<string, string>): Promise<ServiceProcess> {
  const port = env.PORT ? Number(env.PORT) : await freePort()
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--conditions=@task-manager/source', serverEntry],
    {
      env: {
        ...process.env,
        HOST: '127.0.0.1',
        PORT: String(port),
        LOG_LEVEL: 'info',
        AUTH_MODE: 'disabled',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 20_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`task-service exited early:\n${output}`)
    try {
      const response = await fetch(`${url}/health/ready`)
      if (response.status === 200) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`task-service did not become ready:\n${output}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return { url, child, output: () => output, exited }
}

/** Rows in a table, read over a separate connection (what a client could see). */
export async function countRows(databaseUrl: string, table: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    const { rows } = await client.query(`select count(*)::int as count from ${table}`)
    return rows[0].count
  } finally {
    await client.end()
  }
}
