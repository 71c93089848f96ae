import { describe, expect, it } from 'vitest'
import type { LoadEstimate, TargetMetrics } from './cluster-view.js'
import { estimateLoad } from './load.js'
import { performanceScore, priorsOf, speedOf, type PerformanceCandidate } from './performance.js'

const priors = { latencyMs: 250, tokensPerSec: 20 }
const ctx = { priority: 5, priors, anyFresh: true }
const load = (occupied: number, slots = 2): LoadEstimate => estimateLoad({ own: occupied, metrics: undefined, recordSlots: slots, now: 0 })
const cand = (over: Partial<PerformanceCandidate> = {}, metrics: TargetMetrics = { latencyMsEwma: 200, tokensPerSecEwma: 40 }): PerformanceCandidate =>
  ({ local: true, cold: false, load: load(0), metrics, fresh: true, ...over })
const cost = (c: PerformanceCandidate, over: Partial<typeof ctx> & { expectedTokens?: number } = {}): number => performanceScore(c, { ...ctx, ...over }).cost

describe('performance score', () => {
  it('is the expected completion time in ms on an idle host: ttft + tokens / tps', () => {
    // 200 ms + 256 tokens / 40 tok/s = 200 + 6400
    expect(cost(cand())).toBe(6600)
    expect(cost(cand(), { expectedTokens: 40 })).toBe(1200)
    expect(performanceScore(cand(), ctx).reasons).toEqual(['cost=6600ms', 'ttft=200ms', 'tps=40'])
  })

  it('grows with busy slots, and with the queue once no slot is free', () => {
    const costs = [0, 1, 2, 3, 4].map((o) => cost(cand({ load: load(o) })))
    for (let i = 1; i < costs.length; i++) expect(costs[i]!).toBeGreaterThan(costs[i - 1]!)
    // half the slots busy: x(1 + 0.5 x 0.5)
    expect(costs[1]).toBe(6600 * 1.25)
    // full, nobody queued: wait one service / slots, then run at x1.5
    expect(costs[2]).toBe(6600 / 2 + 6600 * 1.5)
  })

  it('prefers a loaded runner to a cold one, unless the loaded one has a long queue', () => {
    expect(cost(cand({ cold: true }))).toBeGreaterThan(cost(cand({ load: load(2) })))
    expect(cost(cand({ cold: true }))).toBeLessThan(cost(cand({ load: load(12) })))
  })

  it('adds a small hop to remote hosts, so the local one wins when equal', () => {
    expect(cost(cand({ local: false })) - cost(cand())).toBe(2)
  })

  it('divides by the success rate, with a floor', () => {
    expect(cost(cand({}, { latencyMsEwma: 200, tokensPerSecEwma: 40, successRate: 0.5 }))).toBe(13_200)
    expect(cost(cand({}, { latencyMsEwma: 200, tokensPerSecEwma: 40, successRate: 0 }))).toBe(6600 / 0.05)
  })

  it('penalises VRAM pressure linearly below the headroom, and only when fresh', () => {
    const m = (free: number): TargetMetrics => ({ latencyMsEwma: 200, tokensPerSecEwma: 40, vramFreeBytes: free })
    expect(cost(cand({}, m(2 * 1024 ** 3)))).toBe(6600)
    expect(cost(cand({}, m(512 * 1024 ** 2)))).toBe(7600)
    expect(cost(cand({}, m(0)))).toBe(8600)
    expect(cost(cand({ fresh: false }, m(0)), { anyFresh: false })).toBe(6600)
  })

  it('penalises silent remote hosts only when others report', () => {
    expect(cost(cand({ fresh: false, local: false }))).toBe(7102)
    expect(cost(cand({ fresh: false, local: false }), { anyFresh: false })).toBe(6602)
    expect(cost(cand({ fresh: false, local: true }))).toBe(6600)
  })

  it('lets a high-priority request skip most of a queue', () => {
    const busy = cand({ load: load(6) })
    expect(cost(busy, { priority: 10 })).toBeLessThan(cost(busy, { priority: 5 }))
    expect(cost(busy, { priority: 5 })).toBeLessThan(cost(busy, { priority: 0 }))
    // with free slots, priority changes nothing
    expect(cost(cand(), { priority: 0 })).toBe(cost(cand(), { priority: 10 }))
  })

  it('assumes unmeasured hosts are average: the median of the measured ones', () => {
    const p = priorsOf([{ latencyMsEwma: 100, tokensPerSecEwma: 10 }, { latencyMsEwma: 300, tokensPerSecEwma: 30 }, undefined, { latencyMsEwma: 0 }])
    expect(p).toEqual({ latencyMs: 200, tokensPerSec: 20 })
    expect(priorsOf([])).toEqual({ latencyMs: 250, tokensPerSec: 20 })
    expect(speedOf(undefined, p)).toMatchObject({ ttftMs: 200, tokensPerSec: 20, measured: false })
  })
})
