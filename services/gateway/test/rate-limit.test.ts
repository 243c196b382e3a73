import { afterEach, describe, expect, test } from 'vitest'
import { type Decision, RateLimiter } from '../src/rate-limit.js'
import { sleep } from './helpers.js'

const limiters: RateLimiter[] = []
afterEach(() => {
  for (const limiter of limiters.splice(0)) limiter.close()
})

function limiter(options: { windowMs?: number; maxKeys?: number } = {}) {
  const exceeded: string[] = []
  const created = new RateLimiter({
    perMinute: { reads: 2, writes: 1, creates: 1, login: 1 },
    windowMs: options.windowMs ?? 60_000,
    maxKeys: options.maxKeys,
    onExceeded: (budget) => exceeded.push(budget),
  })
  limiters.push(created)
  return { limiter: created, exceeded }
}

const take = (l: RateLimiter, client: string, budget: 'reads' | 'writes' = 'reads') =>
  l.take(budget, client) as Decision

describe('RateLimiter (in memory)', () => {
  test('counts per client and budget; the window resets the count', async () => {
    const { limiter: l, exceeded } = limiter({ windowMs: 200 })
    expect(take(l, 'ip:a')).toMatchObject({ allowed: true, limit: 2, remaining: 1, resetSeconds: 1 })
    expect(take(l, 'ip:a')).toMatchObject({ allowed: true, remaining: 0 })
    expect(take(l, 'ip:a')).toMatchObject({ allowed: false, remaining: 0 })
    expect(take(l, 'ip:b')).toMatchObject({ allowed: true, remaining: 1 })
    expect(take(l, 'ip:a', 'writes')).toMatchObject({ allowed: true, limit: 1 })
    expect(exceeded).toEqual(['reads'])
    expect(l.refusal(take(l, 'ip:a'))).toMatch(/at most 2 requests per window/)
    await sleep(250)
    expect(take(l, 'ip:a')).toMatchObject({ allowed: true, remaining: 1 })
  })

  test('keeps at most maxKeys clients, dropping the oldest first', () => {
    const { limiter: l } = limiter({ maxKeys: 2 })
    take(l, 'ip:a')
    take(l, 'ip:a')
    take(l, 'ip:b')
    take(l, 'ip:c')
    // ip:a was dropped to make room for ip:c, so its count starts again; ip:c kept its own.
    expect(take(l, 'ip:a')).toMatchObject({ allowed: true, remaining: 1 })
    expect(take(l, 'ip:c')).toMatchObject({ remaining: 0 })
  })
})
