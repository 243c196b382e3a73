import { DatabaseUnreachableError, runMigrations } from '@task-manager/service-kit'
import { freePort, startEmbeddedPostgres, useTestDatabase } from '@task-manager/testing'
import type { Migration } from 'kysely/migration'
import pg from 'pg'
import { expect, inject, test } from 'vitest'

// The migration runner every service's migrate.ts is: it waits for a database that is not there yet (a pod
// starting before its PostgreSQL, a DNS name not published yet) with a deadline and a line per attempt.

const database = useTestDatabase()

const migrations: Record<string, Migration> = {
  '2026-01-01T00-notes': {
    up: async (db) => {
      await db.schema
        .createTable('notes')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .execute()
    },
  },
}

async function tables(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const { rows } = await client.query("select tablename from pg_tables where schemaname = 'public'")
    return rows.map((row) => row.tablename as string).sort()
  } finally {
    await client.end()
  }
}

test('waits for a PostgreSQL that starts late on its port, logging each attempt, then migrates', async () => {
  const port = await freePort()
  const lines: string[] = []
  const url = `postgres://postgres:postgres@127.0.0.1:${port}/postgres`
  const run = runMigrations({
    service: 'notes',
    config: { DATABASE_URL: url, DATABASE_WAIT_MS: 90_000 },
    migrations,
    log: (line) => lines.push(line),
  })
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const server = await startEmbeddedPostgres({ port })
  try {
    await run
    expect(lines[0]).toMatch(
      new RegExp(`^waiting for 127\\.0\\.0\\.1:${port}/postgres \\(attempt 1: connect ECONNREFUSED`),
    )
    expect(lines.filter((line) => line.startsWith('waiting for')).length).toBeGreaterThanOrEqual(2)
    expect(lines.join('\n')).not.toContain('postgres:postgres@')
    expect(lines).toContain('migration 2026-01-01T00-notes: Success')
    expect(lines.at(-1)).toBe('migrations up to date')
    expect(await tables(url)).toContain('notes')
  } finally {
    await server.stop()
  }
}, 120_000)

test('waits for its database to be created on a running server', async () => {
  const admin = new URL(inject('postgresAdminUrl'))
  const name = `late_${Date.now()}`
  const url = new URL(admin)
  url.pathname = `/${name}`
  const lines: string[] = []
  const run = runMigrations({
    service: 'notes',
    config: { DATABASE_URL: url.toString(), DATABASE_WAIT_MS: 30_000 },
    migrations,
    log: (line) => lines.push(line),
  })
  await new Promise((resolve) => setTimeout(resolve, 800))
  const client = new pg.Client({ connectionString: admin.toString() })
  await client.connect()
  try {
    await client.query(`create database "${name}"`)
    await run
    expect(lines[0]).toMatch(/attempt 1: 3D000 .*does not exist/)
    expect(await tables(url.toString())).toEqual(['kysely_migration', 'kysely_migration_lock', 'notes'])
  } finally {
    await client.query(`drop database if exists "${name}" with (force)`)
    await client.end()
  }
})

test('a host that does not resolve: retried until the deadline, then one error naming host and reason', async () => {
  const lines: string[] = []
  const started = Date.now()
  const failure = await runMigrations({
    service: 'notes',
    config: { DATABASE_URL: 'postgres://u:secret@db.nowhere.invalid:5432/notes', DATABASE_WAIT_MS: 2500 },
    migrations,
    log: (line) => lines.push(line),
  }).catch((error: unknown) => error)
  expect(failure).toBeInstanceOf(DatabaseUnreachableError)
  expect((failure as Error).message).toMatch(
    /^db\.nowhere\.invalid:5432\/notes did not answer within 2.5 s \(\d+ attempts; last: .*(ENOTFOUND|EAI_AGAIN)/,
  )
  expect(Date.now() - started).toBeGreaterThanOrEqual(2500)
  expect(lines.length).toBeGreaterThanOrEqual(2)
  expect(lines.join('\n')).not.toContain('secret')
})

test('an error waiting cannot fix (a wrong password) fails at once, unretried', async () => {
  const url = new URL(database.url)
  url.password = 'not-the-password'
  const lines: string[] = []
  const failure = await runMigrations({
    service: 'notes',
    config: { DATABASE_URL: url.toString(), DATABASE_WAIT_MS: 60_000 },
    migrations,
    log: (line) => lines.push(line),
  }).catch((error: unknown) => error)
  expect(failure).toBeInstanceOf(pg.DatabaseError)
  expect((failure as pg.DatabaseError).code).toBe('28P01')
  expect(lines).toEqual([])
})

test('applied once: a second run finds nothing to do', async () => {
  const lines: string[] = []
  const config = { DATABASE_URL: database.url, DATABASE_WAIT_MS: 0 }
  await runMigrations({ service: 'notes', config, migrations, log: () => {} })
  await runMigrations({ service: 'notes', config, migrations, log: (line) => lines.push(line) })
  expect(lines).toEqual(['migrations up to date'])
})
