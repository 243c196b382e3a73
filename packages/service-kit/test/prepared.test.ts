import { useTestDatabase } from '@task-manager/testing'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDatabase, type Database, poolOf, prepareQuery } from '../src/index.js'

interface Db {
  notes: { id: number; body: string }
}

const database = useTestDatabase('prepared')
let db: Database<Db>

beforeAll(async () => {
  // One connection, so the statement cache we inspect is the one the queries ran on.
  db = createDatabase<Db>({ connectionString: database.url, max: 1 })
  await db.pool.query('create table notes (id int primary key, body text not null)')
  await db.pool.query(`insert into notes values (1, 'one'), (2, 'two')`)
})
afterAll(async () => {
  await db?.close()
})

describe('prepareQuery', () => {
  it('runs a Kysely query as a named prepared statement with new values each call', async () => {
    const byId = prepareQuery(
      db.db,
      'notes_by_id',
      db.db.selectFrom('notes').select(['id', 'body']).where('id', '=', 0),
    )
    expect(await byId.execute([2])).toEqual([{ id: 2, body: 'two' }])
    expect(await byId.execute([1])).toEqual([{ id: 1, body: 'one' }])
    expect(await byId.execute([3])).toEqual([])
    const { rows } = await db.pool.query<{ name: string; statement: string }>(
      'select name, statement from pg_prepared_statements',
    )
    expect(rows).toEqual([{ name: 'notes_by_id', statement: byId.sql }])
  })

  it('keeps working after a migration adds a column (explicit columns, not select *)', async () => {
    const byId = prepareQuery(
      db.db,
      'notes_by_id_again',
      db.db.selectFrom('notes').select(['id', 'body']).where('id', '=', 0),
    )
    expect(await byId.execute([1])).toEqual([{ id: 1, body: 'one' }])
    await db.pool.query(`alter table notes add column extra text not null default ''`)
    expect(await byId.execute([1])).toEqual([{ id: 1, body: 'one' }])
  })

  it('refuses a call with the wrong number of values', async () => {
    const byId = prepareQuery(db.db, 'notes_count', db.db.selectFrom('notes').selectAll().where('id', '=', 0))
    await expect(byId.execute([])).rejects.toThrow('takes 1 values, got 0')
    await expect(byId.execute([1, 2])).rejects.toThrow('takes 1 values, got 2')
  })

  it('runs the compiled query through Kysely on an instance createDatabase did not make', async () => {
    const pool = new pg.Pool({ connectionString: database.url, max: 1 })
    const other = new Kysely<Db>({ dialect: new PostgresDialect({ pool }) })
    try {
      expect(poolOf(other)).toBeUndefined()
      expect(poolOf(db.db)).toBe(db.pool)
      const byId = prepareQuery(other, 'unused', other.selectFrom('notes').select('body').where('id', '=', 0))
      expect(await byId.execute([2])).toEqual([{ body: 'two' }])
      const { rows } = await pool.query('select name from pg_prepared_statements')
      expect(rows).toEqual([])
    } finally {
      await other.destroy()
    }
  })
})
