import { describe, expect, it } from 'vitest'
import { mulberry32 } from '@llmesh/testkit'
import { chooseEvictions, type LocalRunnerUse } from './evict.js'

const GiB = 2 ** 30
const use = (runnerId: string, footprintBytes: number, lastUsedAt: number, over: Partial<LocalRunnerUse> = {}): LocalRunnerUse =>
  ({ runnerId, model: runnerId, footprintBytes, lastUsedAt, inflight: 0, pinned: false, ...over })

describe('chooseEvictions', () => {
  it('evicts nothing when the model fits', () => {
    expect(chooseEvictions([use('a', GiB, 0)], 2 * GiB, 2 * GiB)).toEqual({ ok: true, evict: [] })
  })

  it('takes the least recently used first, and as few as make room', () => {
    const random = mulberry32(3)
    const times = Array.from({ length: 4 }, () => Math.floor(random() * 1e6)).sort((x, y) => x - y)
    const runners = [use('newest', 4 * GiB, times[3]!), use('oldest', GiB, times[0]!), use('old', GiB, times[1]!), use('big', 4 * GiB, times[2]!)]
    expect(chooseEvictions(runners, 2 * GiB, GiB)).toEqual({ ok: true, evict: ['oldest'] })
    // one big runner rather than two small ones, the older of the two big ones
    expect(chooseEvictions(runners, 3 * GiB, GiB)).toEqual({ ok: true, evict: ['big'] })
    expect(chooseEvictions(runners, 9 * GiB, GiB)).toEqual({ ok: true, evict: ['big', 'newest'] })
    expect(chooseEvictions(runners, 10 * GiB, GiB)).toEqual({ ok: true, evict: ['oldest', 'big', 'newest'] })
  })

  it('never evicts a pinned runner, and says how much is missing', () => {
    const runners = [use('pinned', 8 * GiB, 0, { pinned: true }), use('a', GiB, 1), use('b', GiB, 2, { inflight: 3 })]
    expect(chooseEvictions(runners, 2 * GiB, 0)).toEqual({ ok: true, evict: ['a', 'b'] })
    expect(chooseEvictions(runners, 8 * GiB, GiB)).toEqual({ ok: false, shortBytes: 5 * GiB })
  })

  it('drains a serving runner only when idle ones cannot make room', () => {
    const runners = [use('serving', 4 * GiB, 0, { inflight: 1 }), use('idle1', GiB, 5), use('idle2', 2 * GiB, 6)]
    expect(chooseEvictions(runners, 3 * GiB, 0)).toEqual({ ok: true, evict: ['idle1', 'idle2'] })
    expect(chooseEvictions(runners, 4 * GiB, 0)).toEqual({ ok: true, evict: ['serving'] })
    expect(chooseEvictions(runners, 5 * GiB, 0)).toEqual({ ok: true, evict: ['idle1', 'serving'] })
  })
})
