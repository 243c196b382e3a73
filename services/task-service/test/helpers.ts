import { fileURLToPath } from 'node:url'
import { type App, createServer } from '@task-manager/service-kit'
import { type ServiceProcess, startServiceProcess as startProcess } from '@task-manager/testing'
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

const serverEntry = fileURLToPath(new URL('../src/server.ts', import.meta.url))

/** The real task-service as its own OS process (TypeScript sources through tsx), ready to serve. */
export function startServiceProcess(env: Record<string, string>): Promise<ServiceProcess> {
  return startProcess(serverEntry, { AUTH_MODE: 'disabled', ...env }, { name: 'task-service' })
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
