import type { App } from '@task-manager/service-kit'
import { type Call, jsonCaller, listenOnLoopback, useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { buildApp, PASSWORD, register } from './helpers.js'

// A hostile client against the expensive part of the user-service, through real HTTP against real
// PostgreSQL: concurrent guesses against one account's lock, and more concurrent logins than the CPU
// can hash.

const database = useTestDatabase('login_load')
const count = (statuses: number[], status: number) => statuses.filter((s) => s === status).length

describe('the per-email lock under concurrent guesses', () => {
  let app: App
  let call: Call
  beforeAll(async () => {
    app = await buildApp(database.url, { LOGIN_FAILURES_PER_EMAIL: '5', PASSWORD_HASH_QUEUE_MAX: '100' })
    call = jsonCaller(await listenOnLoopback(app))
  })
  afterAll(async () => app?.close())

  test('30 concurrent wrong guesses for one account: exactly 5 password checks, the other 25 get 429', async () => {
    const user = await register(app)
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        call('POST', '/auth/token', { email: user.email, password: `wrong guess ${i}` }),
      ),
    )
    const statuses = answers.map((answer) => answer.status)
    // A 401 is a real check; a 429 was decided before any scrypt ran.
    expect(count(statuses, 401)).toBe(5)
    expect(count(statuses, 429)).toBe(25)
    for (const answer of answers.filter((a) => a.status === 429)) {
      expect(Number(answer.headers.get('retry-after'))).toBeGreaterThan(0)
      expect(answer.type).toMatch(/^application\/problem\+json/)
    }
    // The right password is locked out too, until the window ends.
    expect((await call('POST', '/auth/token', { email: user.email, password: PASSWORD })).status).toBe(429)
  })

  test('30 concurrent guesses for an unknown email: the same 5 checks, the same 25 refusals', async () => {
    const answers = await Promise.all(
      Array.from({ length: 30 }, () =>
        call('POST', '/auth/token', { email: 'nobody@example.test', password: 'guess' }),
      ),
    )
    const statuses = answers.map((answer) => answer.status)
    expect([count(statuses, 401), count(statuses, 429)]).toEqual([5, 25])
  })

  test('a successful login gives its reservation back: logins alone never lock an account', async () => {
    const user = await register(app)
    const statuses: number[] = []
    for (let i = 0; i < 8; i++) {
      statuses.push((await call('POST', '/auth/token', { email: user.email, password: PASSWORD })).status)
    }
    expect(statuses).toEqual(Array(8).fill(200))
  })
})

describe('more concurrent logins than the CPU can hash', () => {
  let app: App
  let call: Call
  beforeAll(async () => {
    // A real scrypt cost (2^13 · 8 · 128 = 8 MiB), two at a time and four waiting.
    app = await buildApp(database.url, {
      PASSWORD_SCRYPT_LOG_N: '13',
      PASSWORD_HASH_CONCURRENCY: '2',
      PASSWORD_HASH_QUEUE_MAX: '4',
      DATABASE_POOL_MAX: '4',
    })
    call = jsonCaller(await listenOnLoopback(app))
  })
  afterAll(async () => app?.close())

  test('40 concurrent logins: 6 hashed or waiting at a time, the rest get 503 + Retry-After at once; other requests are still served', async () => {
    const user = await register(app)
    const auth = { authorization: `Bearer ${user.token}` }
    const timed = async (run: () => Promise<Awaited<ReturnType<Call>>>) => {
      const started = performance.now()
      const answer = await run()
      return { ...answer, ms: performance.now() - started }
    }
    const logins = Array.from({ length: 40 }, () =>
      timed(() => call('POST', '/auth/token', { email: user.email, password: PASSWORD })),
    )
    // While the logins queue: reads that need the database, one after another.
    const reads: Awaited<ReturnType<typeof timed>>[] = []
    for (let i = 0; i < 10; i++) {
      reads.push(await timed(() => call('GET', '/users/me', undefined, auth)))
      reads.push(await timed(() => call('GET', `/users/${user.id}`, undefined, auth)))
    }
    const answers = await Promise.all(logins)
    const statuses = answers.map((answer) => answer.status)

    expect(count(statuses, 200) + count(statuses, 503), JSON.stringify(statuses)).toBe(40)
    // Some are hashed (6 at a time at most: 2 running, 4 waiting), the queue fills, the rest are refused.
    expect(count(statuses, 200)).toBeGreaterThanOrEqual(1)
    expect(count(statuses, 503)).toBeGreaterThanOrEqual(1)
    for (const refused of answers.filter((a) => a.status === 503)) {
      expect(refused.headers.get('retry-after')).toBe('1')
      expect(refused.type).toMatch(/^application\/problem\+json/)
      expect(refused.body.detail).toMatch(/password checks/)
    }
    // Refusals are immediate: well below the time the admitted logins take (generous bound, busy machine).
    const slowestRefusal = Math.max(...answers.filter((a) => a.status === 503).map((a) => a.ms))
    expect(slowestRefusal).toBeLessThan(Math.max(...answers.map((a) => a.ms)))
    // Every other request answered, none shed for want of a database connection.
    expect(reads.map((read) => read.status)).toEqual(Array(20).fill(200))
    // The queue empties again: a login after the storm is served.
    expect((await call('POST', '/auth/token', { email: user.email, password: PASSWORD })).status).toBe(200)
  })
})
