import { randomUUID } from 'node:crypto'
import { startEmbeddedPostgres } from '@task-manager/testing'
import pg from 'pg'
import { expect, test } from 'vitest'
import { startServiceProcess, validTask } from './helpers.js'

// The fault the pool must survive: PostgreSQL restarting under write load, ten times in a row. Sessions
// are terminated while clients are checked out (mid-query and mid-transaction), which pg reports as an
// 'error' event on the client; unhandled, that event kills the process. Here the real service runs as
// its own OS process against its own PostgreSQL server, which really stops and starts.

const RESTARTS = 10
const WRITERS = 6

test(`PostgreSQL restarted ${RESTARTS} times under write load: no crash, only 201/503, no acknowledged write lost`, {
  timeout: 240_000,
}, async () => {
  const postgres = await startEmbeddedPostgres()
  const service = await startServiceProcess({
    DATABASE_URL: postgres.adminUrl,
    RATE_LIMIT_ENABLED: 'false',
    LOG_LEVEL: 'warn',
  })
  let exitedDuringTest: number | null | undefined
  service.exited.then((code) => {
    exitedDuringTest ??= code
  })
  const acknowledged = new Set<number>()
  const statuses = new Map<number, number>()
  let running = true
  try {
    const writers = Array.from({ length: WRITERS }, async (_, writer) => {
      for (let i = 0; running; i++) {
        // Half the writes carry an Idempotency-Key: those run in a transaction on a checked-out client.
        const headers: Record<string, string> = { 'content-type': 'application/json' }
        if (i % 2 === 0) headers['idempotency-key'] = randomUUID()
        let status = 0
        try {
          const response = await fetch(`${service.url}/tasks`, {
            method: 'POST',
            headers,
            body: JSON.stringify({ ...validTask, title: `w${writer}-${i}` }),
            signal: AbortSignal.timeout(10_000),
          })
          status = response.status
          const body = (await response.json()) as { id?: number }
          if (status === 201 && typeof body.id === 'number') acknowledged.add(body.id)
        } catch {
          status = -1 // the connection itself failed: would mean the process died
        }
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
        if (status !== 201) await new Promise((resolve) => setTimeout(resolve, 50))
      }
    })

    const ackedBefore: number[] = []
    for (let round = 0; round < RESTARTS; round++) {
      const before = acknowledged.size
      // Let writes flow, then restart the server under them.
      const deadline = Date.now() + 20_000
      while (acknowledged.size < before + 20 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      ackedBefore.push(acknowledged.size - before)
      await postgres.pause()
      await new Promise((resolve) => setTimeout(resolve, 300))
      await postgres.resume()
      expect(
        exitedDuringTest,
        `the service exited in round ${round}:\n${service.output().slice(-3000)}`,
      ).toBeUndefined()
    }
    // Recovery: writes succeed again after the last restart.
    const last = acknowledged.size
    const deadline = Date.now() + 20_000
    while (acknowledged.size < last + 20 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    running = false
    await Promise.all(writers)

    expect(exitedDuringTest, service.output().slice(-3000)).toBeUndefined()
    console.log(`answers: ${JSON.stringify(Object.fromEntries(statuses))}; acknowledged ${acknowledged.size}`)
    expect(
      ackedBefore.every((n) => n >= 20),
      `writes between restarts: ${ackedBefore}`,
    ).toBe(true)
    expect(acknowledged.size).toBeGreaterThanOrEqual(last + 20)
    // Every answer was a success or a clean 503; never a 500, never a dropped connection.
    expect([...statuses.keys()].sort(), JSON.stringify([...statuses])).toEqual(
      [...statuses.keys()].filter((status) => status === 201 || status === 503).sort(),
    )
    expect(statuses.get(503) ?? 0).toBeGreaterThan(0)

    // Every acknowledged task is in the database.
    const client = new pg.Client({ connectionString: postgres.adminUrl })
    await client.connect()
    try {
      const { rows } = await client.query<{ id: number }>('select id from tasks where id = any($1)', [
        [...acknowledged],
      ])
      expect(rows.length).toBe(acknowledged.size)
    } finally {
      await client.end()
    }
    expect((await fetch(`${service.url}/health/ready`)).status).toBe(200)
  } finally {
    running = false
    await service.stop()
    await postgres.stop()
  }
})
