import { describe, expect, it } from 'vitest'
import { RetryBudget } from './retry-budget.js'

describe('RetryBudget', () => {
  it('allows minRetries plus ratio x requests over the window', () => {
    const b = new RetryBudget({ ratio: 0.2, minRetries: 2, windowMs: 10_000 })
    for (let i = 0; i < 50; i++) b.recordRequest(i)
    let granted = 0
    while (b.tryRetry(100)) granted++
    expect(granted).toBe(12)
    expect(b.canRetry(100)).toBe(false)
    expect(b.totals(100)).toEqual({ requests: 50, retries: 12 })
  })

  it('forgets what left the sliding window', () => {
    const b = new RetryBudget({ ratio: 0, minRetries: 1, windowMs: 1000, buckets: 10 })
    expect(b.tryRetry(0)).toBe(true)
    expect(b.tryRetry(500)).toBe(false)
    expect(b.tryRetry(999)).toBe(false)
    expect(b.tryRetry(1000)).toBe(true)
    // a long pause clears everything
    b.recordRequest(1000)
    expect(b.totals(50_000)).toEqual({ requests: 0, retries: 0 })
  })
})
