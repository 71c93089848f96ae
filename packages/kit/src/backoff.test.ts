import { describe, expect, it } from 'vitest'
import { mulberry32 } from '@llmesh/testkit'
import { backoffCap, backoffDelay, type BackoffInit } from './backoff.js'

describe('backoffCap', () => {
  it('is min(maxMs, baseMs x factor^(n-1)), attempt 1 first, below 1 counted as 1', () => {
    for (let n = 1; n <= 40; n++) expect(backoffCap(n, { baseMs: 50, maxMs: 2000 })).toBe(Math.min(2000, 50 * 2 ** (n - 1)))
    expect(backoffCap(0, { baseMs: 50, maxMs: 2000 })).toBe(50)
    expect(backoffCap(-3, { baseMs: 50, maxMs: 2000 })).toBe(50)
    expect(backoffCap(3, { baseMs: 100, maxMs: 10_000, factor: 3 })).toBe(900)
    expect(backoffCap(5000, { baseMs: 10, maxMs: 300 })).toBe(300) // 2^4999 is Infinity
    expect(backoffCap(2, { baseMs: -5, maxMs: 100 })).toBe(0)
    expect(backoffCap(2, { baseMs: 5, maxMs: -100 })).toBe(0)
  })
})

describe('backoffDelay', () => {
  it('without jitter is the cap, and draws nothing', () => {
    const random = (): number => { throw new Error('drawn') }
    expect([1, 2, 3, 4, 10].map((n) => backoffDelay(n, { baseMs: 100, maxMs: 1000 }, random))).toEqual([100, 200, 400, 800, 1000])
    expect(backoffDelay(3, { baseMs: 100, maxMs: 1000, jitter: 'none' }, random)).toBe(400)
  })

  it('with full jitter stays within [0, cap) for every attempt and random value', () => {
    for (let n = 1; n <= 40; n++) {
      const init: BackoffInit = { baseMs: 50, maxMs: 2000, jitter: 'full' }
      const cap = backoffCap(n, init)
      for (const r of [0, 0.25, 0.5, 0.999999, 1]) {
        const d = backoffDelay(n, init, () => r)
        expect(d).toBeGreaterThanOrEqual(0)
        expect(d).toBeLessThan(cap)
      }
    }
    expect(backoffDelay(1, { baseMs: 50, maxMs: 2000, jitter: 'full' }, () => 0)).toBe(0)
    expect(backoffDelay(3, { baseMs: 50, maxMs: 2000, jitter: 'full' }, () => 0.5)).toBe(100)
    expect(backoffDelay(1000, { baseMs: 10, maxMs: 300, jitter: 'full' }, () => 0.5)).toBe(150)
  })

  it('with full jitter spreads delays over the whole range', () => {
    const random = mulberry32(1)
    const ds = Array.from({ length: 1000 }, () => backoffDelay(5, { baseMs: 50, maxMs: 2000, jitter: 'full' }, random))
    expect(Math.min(...ds)).toBeLessThan(80)
    expect(Math.max(...ds)).toBeGreaterThan(720)
  })

  it('with a fractional jitter spreads cap x (1 ± j), rounded, and draws once even at 0', () => {
    const mid = (): number => 0.5
    expect([1, 2, 3, 4, 11].map((n) => backoffDelay(n, { baseMs: 100, maxMs: 1000, jitter: 0.2 }, mid))).toEqual([100, 200, 400, 800, 1000])
    expect(backoffDelay(1, { baseMs: 100, maxMs: 1000, jitter: 0.2 }, () => 0)).toBe(80)
    expect(backoffDelay(1, { baseMs: 100, maxMs: 1000, jitter: 0.2 }, () => 1)).toBe(120)
    expect(backoffDelay(1, { baseMs: 100, maxMs: 1000, jitter: 2 }, () => 0)).toBe(0) // never below 0
    let draws = 0
    expect(backoffDelay(2, { baseMs: 100, maxMs: 1000, jitter: 0 }, () => { draws++; return 0.9 })).toBe(200)
    expect(draws).toBe(1)
  })
})

/**
 * The delays of the three uses with their parameters, from one seeded source, as the three
 * formulas this one replaced gave them (runners' backoffDelay, the scheduler's backoff, the
 * mesh's redialDelay; recorded from those before they were removed).
 */
describe('the three uses keep their delays', () => {
  it('runner restarts: 500 ms doubling to 60 s, ±20%', () => {
    const random = mulberry32(17)
    const init: BackoffInit = { baseMs: 500, maxMs: 60_000, factor: 2, jitter: 0.2 }
    expect(Array.from({ length: 12 }, (_, a) => backoffDelay(a + 1, init, random)))
      .toEqual([535, 877, 2025, 3465, 6681, 17669, 29211, 61115, 54162, 64401, 67118, 55319])
    const other = mulberry32(17)
    expect(Array.from({ length: 8 }, (_, a) => backoffDelay(a + 1, { baseMs: 100, maxMs: 1000, factor: 3, jitter: 0.5 }, other)))
      .toEqual([118, 208, 928, 665, 588, 1261, 782, 1046])
  })

  it('dispatch retries: 50 ms doubling to 2 s, full jitter', () => {
    const random = mulberry32(17)
    const init: BackoffInit = { baseMs: 50, maxMs: 2000, jitter: 'full' }
    expect(Array.from({ length: 12 }, (_, a) => backoffDelay(a + 1, init, random)))
      .toEqual([33, 19, 106, 66, 70, 1217, 564, 1092, 513, 1366, 1593, 609])
    expect(Array.from({ length: 8 }, (_, a) => backoffCap(a, init))).toEqual([50, 50, 100, 200, 400, 800, 1600, 2000])
  })

  it('redials: 1 s capped at 1 s, no jitter', () => {
    expect(Array.from({ length: 8 }, (_, a) => backoffDelay(a, { baseMs: 1000, maxMs: 1000 }))).toEqual([1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000])
  })
})
