import { describe, expect, it } from 'vitest'
import { Ewma, PeerStats, mergeObserved } from './ewma.js'

describe('Ewma', () => {
  it('starts at the first sample and moves alpha of the way to each next one', () => {
    const e = new Ewma(0.25)
    expect(e.value).toBeUndefined()
    e.update(100)
    e.update(200)
    expect(e.value).toBe(125)
    e.update(Number.NaN)
    expect(e.value).toBe(125)
    expect(e.samples).toBe(2)
  })

  it('knows how far single samples lie from the average', () => {
    const e = new Ewma(0.2)
    e.update(100)
    expect(e.deviation).toBeUndefined()
    for (let i = 0; i < 200; i++) e.update(100)
    expect(e.deviation).toBe(0)
    // samples alternating 50 / 150 around 100: the deviation settles near 50
    for (let i = 0; i < 400; i++) e.update(i % 2 === 0 ? 50 : 150)
    expect(e.value).toBeGreaterThan(90)
    expect(e.value).toBeLessThan(110)
    expect(e.deviation).toBeGreaterThan(45)
    expect(e.deviation).toBeLessThan(55)
  })
})

describe('PeerStats', () => {
  it('tracks latency, tokens/s and success per host from outcomes', () => {
    const s = new PeerStats({ alpha: 0.5, successAlpha: 0.5 })
    s.record('b', { ok: true, firstTokenMs: 100, tokensPerSec: 40 }, 0)
    s.record('b', { ok: true, firstTokenMs: 300, tokensPerSec: 20 }, 0)
    s.record('b', { ok: false, failure: 'connect' }, 0)
    expect(s.get('b', 0)).toEqual({ latencyMsEwma: 200, tokensPerSecEwma: 30, latencyMsDev: 100, tokensPerSecDev: 10, successRate: 0.5, samples: 3 })
    expect(s.get('c', 0)).toBeUndefined()
  })

  it('leaves the success rate alone for busy, aborted and client errors', () => {
    const s = new PeerStats()
    for (const failure of ['busy', 'queue-full', 'aborted', 'client-error', 'deadline'] as const) s.record('b', { ok: false, failure }, 0)
    expect(s.get('b', 0)).toBeUndefined()
  })

  it('lets the success rate recover towards 1 while the host rests', () => {
    const s = new PeerStats({ successAlpha: 1, successRecoveryHalfLifeMs: 10_000 })
    s.record('b', { ok: false, failure: 'stall' }, 0)
    expect(s.get('b', 0)!.successRate).toBe(0)
    expect(s.get('b', 10_000)!.successRate).toBeCloseTo(0.5, 9)
    expect(s.get('b', 20_000)!.successRate).toBeCloseTo(0.75, 9)
  })
})

describe('mergeObserved', () => {
  it('lays a router\'s own observations over the gossiped figures once it has enough', () => {
    const s = new PeerStats()
    const gossiped = new Map([['b', { latencyMsEwma: 50, tokensPerSecEwma: 90, slotsBusy: 1 }]])
    s.record('b', { ok: true, firstTokenMs: 400, tokensPerSec: 30 }, 0)
    expect(mergeObserved(gossiped, s, 0, 2).get('b')).toEqual({ latencyMsEwma: 50, tokensPerSecEwma: 90, slotsBusy: 1 })
    s.record('b', { ok: true, firstTokenMs: 400, tokensPerSec: 30 }, 0)
    expect(mergeObserved(gossiped, s, 0, 2).get('b')).toEqual({ latencyMsEwma: 400, tokensPerSecEwma: 30, latencyMsDev: 0, tokensPerSecDev: 0, slotsBusy: 1, successRate: 1 })
    expect(gossiped.get('b')!.latencyMsEwma).toBe(50)
  })
})
