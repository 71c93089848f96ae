import { describe, expect, it } from 'vitest'
import { PeerHealth } from './health.js'

describe('PeerHealth', () => {
  it('reports outcomes to the breaker and the stats together', () => {
    const h = new PeerHealth({ breaker: { failureThreshold: 2, coolDownMs: 1000 }, minOwnSamples: 1 })
    h.report('b', { ok: false, failure: 'busy' }, 0)
    expect(h.circuits(0).size).toBe(0)
    h.report('b', { ok: false, failure: 'connect' }, 1)
    h.report('b', { ok: false, failure: 'connect' }, 2)
    expect(h.circuits(3)).toEqual(new Map([['b', 'open']]))
    expect(h.allow('b', 3)).toBe(false)
    expect(h.allow('b', 1002)).toBe(true)
    h.report('b', { ok: true, firstTokenMs: 80 }, 1100)
    expect(h.circuits(1100).size).toBe(0)
    expect(h.metrics(new Map(), 1100).get('b')).toMatchObject({ latencyMsEwma: 80 })
  })
})
