import { useTestDatabase } from '@task-manager/testing'
import pg from 'pg'
import { expect, test } from 'vitest'

const database = useTestDatabase()

test('a test file gets a real PostgreSQL database', async () => {
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  const { rows } = await client.query('select current_database() as name, version() as version')
  await client.end()
  expect(rows[0].version).toMatch(/PostgreSQL/)
})
