import { describe, expect, it } from 'vitest'
import { decideRetry, type RetryInput } from './retry.js'
import { RetryBudget } from './retry-budget.js'
import { FAILURES, isHostFailure, isRetryable } from './outcome.js'

const base = (over: Partial<RetryInput> = {}): RetryInput => ({
  failure: 'connect', streamed: false, failedAttempts: 1, remaining: 2, budget: new RetryBudget(), now: 0, random: () => 0.5, ...over
})

describe('decideRetry', () => {
  it('retries a host failure before the first token, after a jittered backoff', () => {
    for (const failure of ['connect', 'server-error', 'stall', 'protocol'] as const) {
      expect(decideRetry(base({ failure }))).toEqual({ retry: true, delayMs: 25, reason: `${failure}: retry 1 after 25ms` })
    }
    expect(decideRetry(base({ failedAttempts: 3 }))).toMatchObject({ retry: true, delayMs: 100 })
  })

  it('goes on at once, free of budget, when the target was busy or its queue full', () => {
    const budget = new RetryBudget({ minRetries: 0, ratio: 0 })
    expect(decideRetry(base({ failure: 'busy', budget, failedAttempts: 99 }))).toEqual({ retry: true, delayMs: 0, reason: 'busy: next host' })
    expect(decideRetry(base({ failure: 'queue-full', budget }))).toMatchObject({ retry: true, delayMs: 0 })
  })

  it('never retries once something was streamed, for client-side failures, or with no host left', () => {
    expect(decideRetry(base({ streamed: true }))).toEqual({ retry: false, reason: 'response already streaming' })
    for (const failure of ['client-error', 'aborted', 'deadline'] as const) {
      expect(decideRetry(base({ failure }))).toEqual({ retry: false, reason: `${failure} is not retryable` })
    }
    expect(decideRetry(base({ remaining: 0 }))).toEqual({ retry: false, reason: 'no untried host left' })
  })

  it('stops at maxAttempts and when the budget is spent', () => {
    expect(decideRetry(base({ failedAttempts: 4 }))).toEqual({ retry: false, reason: '4 failed attempts (max 4)' })
    const budget = new RetryBudget({ minRetries: 1, ratio: 0 })
    expect(decideRetry(base({ budget })).retry).toBe(true)
    expect(decideRetry(base({ budget }))).toEqual({ retry: false, reason: 'retry budget spent' })
  })

  it('classifies every failure', () => {
    expect(FAILURES.filter(isHostFailure)).toEqual(['connect', 'server-error', 'stall', 'protocol'])
    expect(FAILURES.filter(isRetryable)).toEqual(['connect', 'server-error', 'stall', 'protocol', 'busy', 'queue-full'])
  })
})
