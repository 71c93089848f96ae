import { describe, expect, it } from 'vitest'
import { estimateLoad, isFresh } from './load.js'

const now = 10_000

describe('estimateLoad', () => {
  it('counts own and other routers\' claims against the record\'s slots when the host has not reported', () => {
    expect(estimateLoad({ own: 1, metrics: { claims: 2 }, recordSlots: 4, now })).toEqual({
      occupied: 3, slots: 4, load: 0.75, freeSlots: 1, queued: 0, reported: false
    })
  })

  it('takes the larger of claims and the host\'s report, never their sum (they count the same requests)', () => {
    const fresh = { heartbeatAt: now - 100, slotsTotal: 2 }
    // claims know of 2, the host serves those 2: 2, not 4
    expect(estimateLoad({ own: 1, metrics: { ...fresh, claims: 1, slotsBusy: 2 }, recordSlots: 2, now }).occupied).toBe(2)
    // a burst the host has not seen yet: claims win
    expect(estimateLoad({ own: 2, metrics: { ...fresh, claims: 3, slotsBusy: 0 }, recordSlots: 2, now })).toMatchObject({ occupied: 5, queued: 3, freeSlots: 0 })
    // traffic no router claims (direct llama-server clients): the report wins, queue included
    expect(estimateLoad({ own: 0, metrics: { ...fresh, claims: 0, slotsBusy: 2, queueDepth: 1 }, recordSlots: 2, now })).toMatchObject({ occupied: 3, load: 1.5, reported: true })
  })

  it('ignores a stale report and uses the record\'s slots then', () => {
    const stale = { heartbeatAt: now - 5000, slotsTotal: 8, slotsBusy: 8, claims: 1 }
    expect(estimateLoad({ own: 0, metrics: stale, recordSlots: 2, now })).toMatchObject({ occupied: 1, slots: 2, reported: false })
    expect(isFresh(stale, now)).toBe(false)
    expect(isFresh({ heartbeatAt: now - 2000 }, now)).toBe(true)
    expect(isFresh(undefined, now)).toBe(false)
  })

  it('never goes negative, whatever the inputs', () => {
    const r = estimateLoad({ own: -3, metrics: { heartbeatAt: now, claims: -5, slotsBusy: -1, queueDepth: Number.NaN, slotsTotal: -2 }, recordSlots: -1, now })
    expect(r).toEqual({ occupied: 0, slots: 1, load: 0, freeSlots: 1, queued: 0, reported: true })
  })
})
