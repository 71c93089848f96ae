import { describe, expect, it } from 'vitest'
import { mulberry32 } from '@llmesh/testkit'
import { backoff, backoffCap } from './backoff.js'

describe('backoff', () => {
  it('stays within [0, min(max, base x 2^(n-1))) for every attempt and random value', () => {
    for (let n = 1; n <= 40; n++) {
      const cap = Math.min(2000, 50 * 2 ** (n - 1))
      expect(backoffCap(n)).toBe(cap)
      for (const r of [0, 0.25, 0.5, 0.999999, 1]) {
        const d = backoff(n, () => r)
        expect(d).toBeGreaterThanOrEqual(0)
        expect(d).toBeLessThan(cap)
      }
    }
    expect(backoff(1, () => 0)).toBe(0)
    expect(backoff(3, () => 0.5)).toBe(100)
    expect(backoff(1000, () => 0.5, { baseMs: 10, maxMs: 300 })).toBe(150)
    expect(backoffCap(0)).toBe(50)
  })

  it('spreads delays over the whole range (full jitter)', () => {
    let s = 1
    const rnd = (): number => { s = (s * 16807) % 2147483647; return s / 2147483647 }
    const ds = Array.from({ length: 1000 }, () => backoff(5, rnd))
    expect(Math.min(...ds)).toBeLessThan(80)
    expect(Math.max(...ds)).toBeGreaterThan(720)
  })

  it('keeps the delays it had before it became a use of the one backoff in @llmesh/kit (same seeded sequence)', () => {
    // recorded from the scheduler's own backoff before it was replaced by kit's
    const random = mulberry32(17)
    expect(Array.from({ length: 12 }, (_, a) => backoff(a + 1, random))).toEqual([33, 19, 106, 66, 70, 1217, 564, 1092, 513, 1366, 1593, 609])
    expect(Array.from({ length: 8 }, (_, a) => backoffCap(a))).toEqual([50, 50, 100, 200, 400, 800, 1600, 2000])
  })
})
