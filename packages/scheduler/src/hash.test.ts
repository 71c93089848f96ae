import { describe, expect, it } from 'vitest'
import { fnv1a64, unitHash } from './hash.js'

describe('fnv1a64', () => {
  it('matches the published FNV-1a 64-bit test vectors', () => {
    expect(fnv1a64('')).toBe('cbf29ce484222325')
    expect(fnv1a64('a')).toBe('af63dc4c8601ec8c')
    expect(fnv1a64('foobar')).toBe('85944171f73967e8')
  })

  it('hashes UTF-8 bytes, not UTF-16 code units', () => {
    // 'é' is c3 a9 in UTF-8
    expect(fnv1a64('é')).toBe(fnv1a64('\u00e9'))
    expect(fnv1a64('é')).not.toBe(fnv1a64('e'))
  })
})

describe('unitHash', () => {
  it('is in (0, 1), deterministic, and spread evenly', () => {
    const buckets = new Array<number>(10).fill(0)
    for (let i = 0; i < 5000; i++) {
      const u = unitHash(`key-${i}\npeer`)
      expect(u).toBeGreaterThan(0)
      expect(u).toBeLessThan(1)
      buckets[Math.floor(u * 10)]!++
    }
    expect(unitHash('x')).toBe(unitHash('x'))
    for (const b of buckets) expect(b).toBeGreaterThan(400)
  })
})
