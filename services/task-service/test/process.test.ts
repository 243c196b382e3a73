import { get } from 'node:http'
import { startEmbeddedPostgres, useTestDatabase } from '@task-manager/testing'
import { describe, expect, test } from 'vitest'
import { countRows, startServiceProcess, validTask } from './helpers.js'

// The real service as an OS process over real HTTP: what survives a crash, how it drains, how it
// behaves while its database is gone.

const database = useTestDatabase()

async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${url}/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
}

/** GET on a new connection (not a pooled keep-alive one the server may be closing). */
function statusOnFreshConnection(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (response) => {
      response.resume()
      resolve(response.statusCode ?? 0)
    }).on('error', reject)
  })
}

describe('durability', () => {
  test('every create acknowledged with 201 is still there after SIGKILL and restart', async () => {
    const service = await startServiceProcess({ DATABASE_URL: database.url, RATE_LIMIT_ENABLED: 'false' })
    const acknowledged: number[] = []
    let stop = false
    // Eight concurrent writers, each bounded to 400 requests; the process is killed mid-stream.
    const writers = Array.from({ length: 8 }, async (_, writer) => {
      for (let i = 0; i < 400 && !stop; i++) {
        try {
          const response = await post(service.url, { ...validTask, title: `w${writer}-${i}` })
          if (response.status === 201) acknowledged.push(((await response.json()) as { id: number }).id)
        } catch {
          // connection refused/reset once the process is dead
        }
      }
    })
    while (acknowledged.length < 150) await new Promise((resolve) => setTimeout(resolve, 10))
    service.child.kill('SIGKILL')
    await service.exited
    stop = true
    await Promise.all(writers)

    const restarted = await startServiceProcess({ DATABASE_URL: database.url, RATE_LIMIT_ENABLED: 'false' })
    try {
      const missing: number[] = []
      for (const id of acknowledged) {
        const response = await fetch(`${restarted.url}/tasks/${id}`)
        if (response.status !== 200) missing.push(id)
      }
      expect(missing).toEqual([])
      expect(await countRows(database.url, 'tasks')).toBeGreaterThanOrEqual(acknowledged.length)
    } finally {
      restarted.child.kill('SIGTERM')
      await restarted.exited
    }
  })
})

describe('graceful shutdown', () => {
  test('SIGTERM under load: requests that reached the service succeed, the process exits 0 in time', async () => {
    const service = await startServiceProcess({
      DATABASE_URL: database.url,
      RATE_LIMIT_ENABLED: 'false',
      SHUTDOWN_DELAY_MS: '300',
      SHUTDOWN_GRACE_MS: '5000',
    })
    const statuses: number[] = []
    let refused = 0
    let stop = false
    const clients = Array.from({ length: 6 }, async () => {
      while (!stop) {
        try {
          const response = await fetch(`${service.url}/tasks?limit=5`)
          statuses.push(response.status)
          await response.arrayBuffer()
        } catch {
          refused++ // the listener is closed: the request never reached the service
          return
        }
      }
    })
    await new Promise((resolve) => setTimeout(resolve, 300))
    const signalled = Date.now()
    service.child.kill('SIGTERM')
    await new Promise((resolve) => setTimeout(resolve, 50))
    const readyDuringDrain = await statusOnFreshConnection(`${service.url}/health/ready`)
    const code = await service.exited
    const took = Date.now() - signalled
    stop = true
    await Promise.all(clients)

    expect(readyDuringDrain).toBe(503)
    expect(code).toBe(0)
    expect(took).toBeLessThan(5000)
    expect(statuses.length).toBeGreaterThan(20)
    // Every answered request succeeded, or was told 503 "closing" with Connection: close to retry elsewhere.
    expect(statuses.filter((status) => status !== 200 && status !== 503)).toEqual([])
    expect(statuses.filter((status) => status === 200).length).toBeGreaterThan(20)
    expect(service.output()).toContain('shutdown complete')
    expect(refused).toBeLessThanOrEqual(6)
  })
})

describe('database outage', () => {
  test('503 problem+json and not-ready while PostgreSQL is down; recovers on its own', async () => {
    const pg = await startEmbeddedPostgres()
    const url = pg.adminUrl
    const service = await startServiceProcess({ DATABASE_URL: url, RATE_LIMIT_ENABLED: 'false' })
    try {
      expect((await post(service.url, validTask)).status).toBe(201)
      await pg.pause()

      const started = Date.now()
      const during = await post(service.url, validTask)
      expect(Date.now() - started).toBeLessThan(3000)
      expect(during.status).toBe(503)
      expect(during.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      expect(during.headers.get('retry-after')).toBe('1')
      expect((await fetch(`${service.url}/health/ready`)).status).toBe(503)
      expect((await fetch(`${service.url}/health/live`)).status).toBe(200)

      await pg.resume()
      let recovered = 0
      for (let i = 0; i < 50 && recovered !== 201; i++) {
        recovered = (await post(service.url, validTask)).status
        if (recovered !== 201) await new Promise((resolve) => setTimeout(resolve, 200))
      }
      expect(recovered).toBe(201)
      expect((await fetch(`${service.url}/health/ready`)).status).toBe(200)
    } finally {
      service.child.kill('SIGTERM')
      await service.exited
      await pg.stop()
    }
  })
})

describe('rate limits', () => {
  test('creates beyond the per-minute budget get 429 problem+json with Retry-After; reads keep their own budget', async () => {
    const service = await startServiceProcess({
      DATABASE_URL: database.url,
      RATE_LIMIT_CREATES_PER_MINUTE: '3',
      RATE_LIMIT_READS_PER_MINUTE: '5',
    })
    try {
      const codes: number[] = []
      for (let i = 0; i < 4; i++) codes.push((await post(service.url, validTask)).status)
      expect(codes).toEqual([201, 201, 201, 429])
      const limited = await post(service.url, validTask)
      expect(limited.status).toBe(429)
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0)
      expect(limited.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      expect(((await limited.json()) as { detail: string }).detail).toMatch(/at most 3 requests per minute/)
      expect((await fetch(`${service.url}/tasks`)).status).toBe(200)
    } finally {
      service.child.kill('SIGTERM')
      await service.exited
    }
  })
})
