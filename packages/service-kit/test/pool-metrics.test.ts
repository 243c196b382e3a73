import { createDatabase, createServer, databasePlugin, serviceKit } from '@task-manager/service-kit'
import { useTestDatabase } from '@task-manager/testing'
import { expect, test } from 'vitest'

const database = useTestDatabase()
const identity = { service: 'pool-test', version: '0' }

/** The value of one series in the Prometheus text of /metrics. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `) || line.startsWith(`${series}{`)) {
      if (line.slice(0, line.lastIndexOf(' ')) === series)
        return Number(line.slice(line.lastIndexOf(' ') + 1))
    }
  }
  return undefined
}

test('/metrics shows the pool in use, its waiters and every caller that timed out waiting', async () => {
  const app = createServer(identity, { LOG_LEVEL: 'silent' })
  await app.register(serviceKit, identity)
  // Waiters give up after 3 s: long enough for this busy machine to open the first connection in time.
  const db = createDatabase({ connectionString: database.url, max: 1, connectionTimeoutMs: 3000 })
  await app.register(databasePlugin, { database: db })
  await app.ready()
  const scrape = async () => (await app.inject({ url: '/metrics' })).body

  // One connection, held: the pool is full.
  const held = await db.pool.connect()
  let text = await scrape()
  expect(sample(text, 'db_client_connections{state="used",pool="main",service="pool-test"}')).toBe(1)
  expect(sample(text, 'db_client_connections{state="idle",pool="main",service="pool-test"}')).toBe(0)
  expect(sample(text, 'db_client_connections_max{pool="main",service="pool-test"}')).toBe(1)

  // Two callers wait (one through pool.query, one through Kysely); both give up after 3 s.
  const waiting = [
    db.pool.query('select 1').catch((error: Error) => error),
    db.db
      .selectNoFrom((eb) => eb.val(1).as('one'))
      .execute()
      .catch((error: Error) => error),
  ]
  let pending: number | undefined
  for (let i = 0; i < 40 && pending !== 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 25))
    pending = sample(
      await scrape(),
      'db_client_connections_pending_requests{pool="main",service="pool-test"}',
    )
  }
  expect(pending).toBe(2)
  const errors = await Promise.all(waiting)
  for (const error of errors) expect(String(error)).toMatch(/timeout exceeded when trying to connect/)
  text = await scrape()
  expect(sample(text, 'db_client_connection_timeouts_total{pool="main",service="pool-test"}')).toBe(2)
  expect(sample(text, 'db_client_connections_pending_requests{pool="main",service="pool-test"}')).toBe(0)

  // Released: free again, and queries work.
  held.release()
  await db.pool.query('select 1')
  text = await scrape()
  expect(sample(text, 'db_client_connections{state="used",pool="main",service="pool-test"}')).toBe(0)
  expect(sample(text, 'db_client_connections{state="idle",pool="main",service="pool-test"}')).toBe(1)
  await app.close()
})
