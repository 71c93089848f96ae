import { describe, expect, it } from 'vitest'
import { DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY } from './constants.js'
import { STRATEGIES, clampPriority, isStrategy } from './strategy.js'

describe('strategies', () => {
  it('isStrategy guards', () => {
    for (const s of STRATEGIES) expect(isStrategy(s)).toBe(true)
    expect(isStrategy('Prefix-Affinity')).toBe(false)
    expect(isStrategy(3)).toBe(false)
  })

  it('clampPriority keeps a number in the priority range; NaN or nothing is the default', () => {
    expect(clampPriority(7)).toBe(7)
    expect(clampPriority(99)).toBe(MAX_PRIORITY)
    expect(clampPriority(-3)).toBe(MIN_PRIORITY)
    expect(clampPriority(Number.NaN)).toBe(DEFAULT_PRIORITY)
    expect(clampPriority(undefined)).toBe(DEFAULT_PRIORITY)
  })
})
