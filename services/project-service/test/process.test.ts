import { fileURLToPath } from 'node:url'
import { startTestIssuer, type TestIssuer } from '@task-manager/auth/testing'
import { useTestDatabase } from '@task-manager/testing'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  type ServiceProcess,
  spawnEntry,
  startServiceProcess,
  startUserServiceStub,
  type UserServiceStub,
} from './helpers.js'

// The real service as its own OS process, talking real HTTP to a real issuer and user-service stand-in.
const database = useTestDatabase()
let issuer: TestIssuer
let users: UserServiceStub

beforeAll(async () => {
  issuer = await startTestIssuer()
  users = await startUserServiceStub([2])
})
afterAll(async () => {
  await users?.close()
  await issuer?.close()
})

const migrateEntry = fileURLToPath(new URL('../src/migrate.ts', import.meta.url))

describe('the project-service process', () => {
  test('migrate.ts migrates and exits 0; the server then serves real HTTP with authentication, calls the user-service, and shuts down cleanly on SIGTERM', async () => {
    // The init container's environment is the service's: migrate.ts checks the same configuration.
    const migrate = spawnEntry(migrateEntry, { DATABASE_URL: database.url, JWKS_URL: issuer.jwksUrl })
    expect(await migrate.exited, migrate.output()).toBe(0)
    expect(migrate.output()).toContain('project-service: migrations up to date')
    const client = new pg.Client({ connectionString: database.url })
    await client.connect()
    const { rows } = await client.query(
      "select table_name from information_schema.tables where table_name in ('projects', 'project_members') order by 1",
    )
    await client.end()
    expect(rows.map((row) => row.table_name)).toEqual(['project_members', 'projects'])

    let service: ServiceProcess | undefined
    try {
      service = await startServiceProcess({
        DATABASE_URL: database.url,
        MIGRATE_ON_START: 'false',
        JWKS_URL: issuer.jwksUrl,
        USER_SERVICE_URL: users.url,
      })
      expect((await fetch(`${service.url}/projects`)).status).toBe(401)
      const headers = {
        authorization: `Bearer ${await issuer.sign({ sub: 1 })}`,
        'content-type': 'application/json',
      }
      const created = await fetch(`${service.url}/projects`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ name: 'Over the wire' }),
      })
      expect(created.status).toBe(201)
      const { id } = (await created.json()) as { id: number }
      const added = await fetch(`${service.url}/projects/${id}/members`, {
        method: 'POST',
        headers: { ...headers, 'x-request-id': 'process-test-1' },
        body: JSON.stringify({ user_id: 2, role: 'viewer' }),
      })
      expect(added.status).toBe(201)
      expect(users.requests.at(-1)?.requestId).toBe('process-test-1')

      service.child.kill('SIGTERM')
      expect(await service.exited, service.output()).toBe(0)
      expect(service.output()).toContain('shutdown complete')
    } finally {
      if (service && service.child.exitCode === null) service.child.kill('SIGKILL')
    }
  })

  test('AUTH_MODE=required without JWKS_URL refuses to start (exit 78, naming the setting)', async () => {
    const run = spawnEntry(fileURLToPath(new URL('../src/server.ts', import.meta.url)), {
      DATABASE_URL: database.url,
      PORT: '1',
    })
    expect(await run.exited).toBe(78)
    expect(run.output()).toContain('JWKS_URL')
  })

  test('AUTH_MODE=disabled logs a loud warning at start', async () => {
    let service: ServiceProcess | undefined
    try {
      service = await startServiceProcess({ DATABASE_URL: database.url, AUTH_MODE: 'disabled' })
      expect(service.output()).toMatch(/AUTH_MODE=disabled/)
      expect(service.output()).toContain('"level":"warn"')
    } finally {
      service?.child.kill('SIGTERM')
      await service?.exited
    }
  })
})
