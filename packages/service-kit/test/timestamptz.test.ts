import { parseTimestamptz } from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import pg from 'pg'
import { expect, test } from 'vitest'

const database = useTestDatabase()

test('timestamptz values read by position are the same instants PostgreSQL stored, in a UTC session or not', async () => {
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  try {
    const values: string[] = [
      '2026-12-03 05:44:00+00',
      '2026-12-03 05:44:00.1+00',
      '2026-12-03 05:44:00.12+00',
      '2026-12-03 05:44:00.123+00',
      '2026-12-03 05:44:00.123456+00',
      '1999-12-31 23:59:59.999+00',
      '2024-02-29 00:00:00.5+00',
      '0099-06-01 12:00:00+00',
      '9999-12-31 23:59:59.999+00',
      '0044-03-15 12:00:00+00 BC',
      'infinity',
      '-infinity',
    ]
    // Every millisecond of one second, and random instants across four centuries.
    for (let ms = 0; ms < 1000; ms++) values.push(`2026-01-01 00:00:00.${String(ms).padStart(3, '0')}+00`)
    for (let i = 0; i < 500; i++)
      values.push(new Date(Date.UTC(1900, 0) + Math.random() * 1.26e13).toISOString())
    for (const zone of ['UTC', 'Asia/Kolkata']) {
      await client.query(`set timezone = '${zone}'`)
      // The text PostgreSQL sends for each value, and its instant as PostgreSQL computes it.
      const { rows } = await client.query<{ t: string; e: string }>({
        text: 'select v::timestamptz(3)::text as t, extract(epoch from v::timestamptz(3)) * 1000 as e from unnest($1::text[]) as v',
        values: [values],
      })
      expect(rows).toHaveLength(values.length)
      if (zone === 'UTC') expect(rows[3]?.t).toBe('2026-12-03 05:44:00.123+00')
      for (const { t, e } of rows) {
        const parsed = parseTimestamptz(t)
        expect([t, typeof parsed === 'number' ? parsed : (parsed as Date).getTime()]).toEqual([t, Number(e)])
      }
    }
  } finally {
    await client.end()
  }
})
