import { describe, expect, it } from 'vitest'
import { Claims, overlayReport, targetMetrics } from './claims.js'

describe('Claims', () => {
  it('counts per target and releases once, however often release is called', () => {
    const c = new Claims()
    const r1 = c.claim('b')
    const r2 = c.claim('b')
    c.claim('c')
    expect(c.toRecord()).toEqual({ b: 2, c: 1 })
    r1(); r1(); r1()
    expect(c.get('b')).toBe(1)
    r2(); r2()
    expect(c.get('b')).toBe(0)
    expect(c.inflight.has('b')).toBe(false)
    expect(c.toRecord()).toEqual({ c: 1 })
  })
})

describe('targetMetrics', () => {
  it('sums the claims of the other routers per target, leaving out its own', () => {
    const m = targetMetrics([
      { peerId: 'a', lastHeardAt: 5, metrics: { slotsBusy: 1, slotsTotal: 2, claims: { b: 3, c: 1 } } },
      { peerId: 'b', lastHeardAt: 6, metrics: { slotsBusy: 2, slotsTotal: 2, queueDepth: 1, tokensPerSec: 30, latencyMs: 120, successRate: 0.9, claims: { c: 2 } } },
      { peerId: 'self', lastHeardAt: 7, metrics: { slotsBusy: 0, slotsTotal: 4, claims: { b: 100 } } }
    ], 'self')
    expect(m.get('b')).toEqual({ claims: 3, slotsBusy: 2, slotsTotal: 2, queueDepth: 1, tokensPerSecEwma: 30, latencyMsEwma: 120, successRate: 0.9, heartbeatAt: 6 })
    expect(m.get('c')).toEqual({ claims: 3 })
    expect(m.get('a')).toMatchObject({ claims: 0, slotsBusy: 1, heartbeatAt: 5 })
    expect(m.get('self')).toMatchObject({ claims: 0, slotsTotal: 4 })
  })

  it('ignores dead and departed routers, negative claims, and zero speeds (no samples)', () => {
    const m = targetMetrics([
      { peerId: 'a', state: 'dead', metrics: { claims: { c: 5 } } },
      { peerId: 'b', state: 'left', metrics: { claims: { c: 5 } } },
      { peerId: 'd', state: 'suspect', metrics: { tokensPerSec: 0, latencyMs: 0, claims: { c: -4, e: 1 } } }
    ], 'self')
    expect(m.get('c')).toEqual({ claims: 0 })
    expect(m.get('e')).toEqual({ claims: 1 })
    expect(m.get('d')).toEqual({ claims: 0 })
    expect(m.has('a')).toBe(false)
  })
})

describe('overlayReport', () => {
  it('lays a busy answer\'s admission snapshot over one host, fresh, without touching the input', () => {
    const before = new Map([['b', { claims: 1, slotsBusy: 0, heartbeatAt: 0, tokensPerSecEwma: 30 }]])
    const after = overlayReport(before, 'b', { slotsBusy: 2, slotsTotal: 2, queueDepth: -1 }, 900)
    expect(after.get('b')).toEqual({ claims: 1, slotsBusy: 2, slotsTotal: 2, queueDepth: 0, heartbeatAt: 900, tokensPerSecEwma: 30 })
    expect(before.get('b')!.slotsBusy).toBe(0)
  })
})
