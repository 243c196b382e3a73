import { parseEvent } from '@task-manager/events'
import { createDatabase } from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import { sql } from 'kysely'
import { Migrator } from 'kysely/migration'
import { afterAll, describe, expect, test } from 'vitest'
import { migrations } from '../src/db/migrations/index.js'

// Memberships made before the outbox existed never produced an event: the backfill migration writes one
// projects.member.added per existing membership, as valid events of the catalogue, so a consumer building
// its read model from the stream (the task-service) learns them.
const database = useTestDatabase('projects_backfill')
let close: (() => Promise<void>) | undefined
afterAll(async () => {
  await close?.()
})

describe('membership backfill migration', () => {
  test('writes one valid projects.member.added per membership that exists, in project order', async () => {
    const { db, close: closeDatabase } = createDatabase({ connectionString: database.url })
    close = closeDatabase
    const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } })
    expect((await migrator.migrateTo('2026-12-01T00-events')).error).toBeUndefined()
    // Rows as an older version of the service left them: no events in the outbox for them.
    await sql`insert into projects (name, created_by) values ('Old', 7), ('Older', 8)`.execute(db)
    await sql`insert into project_members (project_id, user_id, role) values
      (2, 8, 'owner'), (1, 7, 'owner'), (1, 9, 'viewer')`.execute(db)
    expect((await migrator.migrateToLatest()).error).toBeUndefined()

    const rows = await sql<{ subject: string; aggregate_id: string; payload: unknown }>`
      select subject, aggregate_id, payload from event_outbox order by id`.execute(db)
    const events = rows.rows.map((row) => parseEvent(JSON.stringify(row.payload)))
    expect(rows.rows.map((row) => [row.subject, row.aggregate_id])).toEqual([
      ['projects.member.added', '1'],
      ['projects.member.added', '1'],
      ['projects.member.added', '2'],
    ])
    expect(events.map((event) => event.data)).toEqual([
      { project_id: 1, user_id: 7, role: 'owner' },
      { project_id: 1, user_id: 9, role: 'viewer' },
      { project_id: 2, user_id: 8, role: 'owner' },
    ])
    for (const event of events) {
      expect(event).toMatchObject({
        type: 'projects.member.added',
        schema_version: 1,
        aggregate_type: 'project',
        producer: 'project-service',
        traceparent: null,
      })
      expect(new Date(event.occurred_at).getTime()).toBeGreaterThan(Date.now() - 60_000)
    }
    expect(new Set(events.map((event) => event.id)).size).toBe(3)
  })

  test('after it, the outbox keeps only the indexes its queries use; the step goes down and up again', async () => {
    const { db, close: closeDatabase } = createDatabase({ connectionString: database.url })
    const previous = close
    close = async () => {
      await previous?.()
      await closeDatabase()
    }
    const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } })
    expect((await migrator.migrateToLatest()).error).toBeUndefined()
    const indexes = async () =>
      (
        await sql<{ indexname: string }>`
          select indexname from pg_indexes where tablename = 'event_outbox' order by indexname`.execute(db)
      ).rows.map((row) => row.indexname)
    const slim = ['event_outbox_created_at_brin', 'event_outbox_pkey', 'event_outbox_unsent_idx']
    expect(await indexes()).toEqual(slim)
    expect((await migrator.migrateDown()).error).toBeUndefined()
    expect(await indexes()).toEqual([
      'event_outbox_event_id_key',
      'event_outbox_pkey',
      'event_outbox_sent_at_idx',
      'event_outbox_unsent_idx',
    ])
    expect((await migrator.migrateToLatest()).error).toBeUndefined()
    expect(await indexes()).toEqual(slim)
    // The backfilled rows are all still there.
    const { rows } = await sql<{ n: string }>`select count(*) as n from event_outbox`.execute(db)
    expect(Number(rows[0]?.n)).toBe(3)
  })
})
