import { describe, expect, it } from 'vitest'
import { LlmeshError } from '@llmesh/protocol'
import { DEFAULT_STRATEGY, STRATEGIES, isStrategy, parsePriority, parseStrategy } from './strategy.js'

describe('parseStrategy', () => {
  it('accepts every strategy name, ignoring case and blanks', () => {
    for (const s of STRATEGIES) {
      expect(parseStrategy(s)).toBe(s)
      expect(parseStrategy(` ${s.toUpperCase()} `)).toBe(s)
    }
  })

  it('falls back when the header is absent or empty', () => {
    expect(parseStrategy(undefined)).toBe(DEFAULT_STRATEGY)
    expect(parseStrategy('')).toBe('performance')
    expect(parseStrategy(null, 'round-robin')).toBe('round-robin')
    expect(parseStrategy(['random'])).toBe('random')
  })

  it('rejects an unknown name with INVALID_REQUEST naming the valid ones', () => {
    let err: unknown
    try { parseStrategy('fastest-please') } catch (e) { err = e }
    expect(err).toBeInstanceOf(LlmeshError)
    expect((err as LlmeshError).code).toBe('INVALID_REQUEST')
    expect((err as LlmeshError).status).toBe(400)
    expect((err as LlmeshError).message).toBe("unknown routing strategy 'fastest-please'; valid strategies: performance, least-loaded, round-robin, fastest, random, prefix-affinity")
    expect(() => parseStrategy(['random', 'fastest'])).toThrow(/more than once/)
  })

  it('isStrategy guards', () => {
    expect(isStrategy('prefix-affinity')).toBe(true)
    expect(isStrategy('Prefix-Affinity')).toBe(false)
    expect(isStrategy(3)).toBe(false)
  })
})

describe('parsePriority', () => {
  it('reads integers 0-10 and defaults to 5', () => {
    expect(parsePriority('0')).toBe(0)
    expect(parsePriority(' 10 ')).toBe(10)
    expect(parsePriority(7)).toBe(7)
    expect(parsePriority(undefined)).toBe(5)
    expect(parsePriority('')).toBe(5)
  })

  it('rejects anything else with INVALID_REQUEST', () => {
    for (const bad of ['11', '-1', '2.5', 'high', 'NaN']) {
      expect(() => parsePriority(bad)).toThrow(LlmeshError)
      expect(() => parsePriority(bad)).toThrow(/integer from 0 to 10/)
    }
  })
})
