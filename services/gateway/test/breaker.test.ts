import { describe, expect, test } from 'vitest'
import { CircuitBreaker } from '../src/breaker.js'
import { RetryBudget } from '../src/upstream.js'

function clock(start = 1_000_000) {
  let now = start
  return { now: () => now, advance: (ms: number) => (now += ms) }
}

describe('CircuitBreaker', () => {
  test('consecutive failures open it; a success in between resets the count', () => {
    const time = clock()
    const changes: string[] = []
    const breaker = new CircuitBreaker({
      failureThreshold: 3,
      resetMs: 1000,
      now: time.now,
      onStateChange: (s) => changes.push(s),
    })
    breaker.failure()
    breaker.failure()
    breaker.success()
    breaker.failure()
    breaker.failure()
    expect(breaker.allow()).toBe(true)
    breaker.failure()
    expect(breaker.state).toBe('open')
    expect(breaker.allow()).toBe(false)
    expect(breaker.retryAfterSeconds()).toBe(1)
    expect(changes).toEqual(['open'])
  })

  test('half-open admits exactly one probe; its success closes, its failure reopens for a full period', () => {
    const time = clock()
    const breaker = new CircuitBreaker({ failureThreshold: 1, resetMs: 5000, now: time.now })
    breaker.failure()
    time.advance(4999)
    expect(breaker.allow()).toBe(false)
    expect(breaker.retryAfterSeconds()).toBe(1)
    time.advance(1)
    expect(breaker.allow()).toBe(true)
    expect(breaker.state).toBe('half_open')
    expect(breaker.allow()).toBe(false)
    breaker.failure()
    expect(breaker.state).toBe('open')
    expect(breaker.retryAfterSeconds()).toBe(5)
    time.advance(5000)
    expect(breaker.allow()).toBe(true)
    breaker.success()
    expect(breaker.state).toBe('closed')
    expect(breaker.allow()).toBe(true)
    expect(breaker.allow()).toBe(true)
  })

  test('a probe that ended without a verdict frees the half-open slot', () => {
    const time = clock()
    const breaker = new CircuitBreaker({ failureThreshold: 1, resetMs: 10, now: time.now })
    breaker.failure()
    time.advance(10)
    expect(breaker.allow()).toBe(true)
    expect(breaker.allow()).toBe(false)
    breaker.release()
    expect(breaker.allow()).toBe(true)
  })
})

describe('RetryBudget', () => {
  test('allows the floor plus a share of the second’s requests, then refuses until the next second', () => {
    const budget = new RetryBudget(0.2, 2)
    const t = 5_000_000
    for (let i = 0; i < 10; i++) budget.recordRequest(t)
    // 2 + 0.2 × 10 = 4 retries this second.
    const granted = Array.from({ length: 6 }, () => budget.tryRetry(t + 10))
    expect(granted).toEqual([true, true, true, true, false, false])
    expect(budget.tryRetry(t + 1000)).toBe(true)
  })
})
