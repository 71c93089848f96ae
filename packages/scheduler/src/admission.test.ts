import { describe, expect, it } from 'vitest'
import { Admission } from './admission.js'

describe('Admission', () => {
  it('grants up to its slots, then answers busy unless the request may queue', () => {
    const a = new Admission<string>({ slots: 2, capacity: 2 })
    expect(a.acquire({ id: '1', value: '1' }, 0)).toEqual({ kind: 'granted' })
    expect(a.acquire({ id: '2', value: '2' }, 0)).toEqual({ kind: 'granted' })
    expect(a.acquire({ id: '3', value: '3' }, 0)).toEqual({ kind: 'busy', queueDepth: 0 })
    expect(a.acquire({ id: '3', value: '3', mayQueue: true }, 0)).toEqual({ kind: 'queued', queueDepth: 1 })
    expect(a.acquire({ id: '4', value: '4', mayQueue: true }, 0)).toEqual({ kind: 'queued', queueDepth: 2 })
    expect(a.acquire({ id: '5', value: '5', mayQueue: true }, 0)).toEqual({ kind: 'rejected', reason: 'full', retryAfterSec: 1 })
    expect(a.acquire({ id: '1', value: '1' }, 0)).toEqual({ kind: 'rejected', reason: 'duplicate' })
    expect(a.snapshot()).toEqual({ slotsBusy: 2, slotsTotal: 2, queueDepth: 2 })
  })

  it('hands a freed slot to the queued request of highest priority', () => {
    const a = new Admission<string>({ slots: 1, agingPerSec: 0 })
    a.acquire({ id: 'run', value: 'run' }, 0)
    a.acquire({ id: 'low', priority: 1, mayQueue: true, value: 'low' }, 0)
    a.acquire({ id: 'high', priority: 9, mayQueue: true, value: 'high' }, 1)
    const ev = a.release('run', 10)
    expect(ev.granted.map((e) => e.value)).toEqual(['high'])
    // 'high' holds the slot, 'low' still waits (its id is in use)
    expect(a.snapshot()).toEqual({ slotsBusy: 1, slotsTotal: 1, queueDepth: 1 })
    expect(a.acquire({ id: 'low', value: 'low' }, 10)).toEqual({ kind: 'rejected', reason: 'duplicate' })
    // a newcomer does not jump the queue when a slot frees: the queue is served first
    expect(a.release('high', 20).granted.map((e) => e.id)).toEqual(['low'])
  })

  it('never counts below zero or above its slots, whatever is released twice or unknown', () => {
    const a = new Admission<null>({ slots: 2 })
    a.acquire({ id: 'x', value: null }, 0)
    a.release('x', 1)
    a.release('x', 1)
    a.release('never-acquired', 1)
    expect(a.busy).toBe(0)
    expect(a.free).toBe(2)
    for (let i = 0; i < 5; i++) a.acquire({ id: `r${i}`, value: null, mayQueue: true }, 2)
    expect(a.busy).toBe(2)
    expect(a.queueDepth).toBe(3)
  })

  it('drops queued requests at their deadline, and refuses ones already past it', () => {
    const a = new Admission<string>({ slots: 1 })
    a.acquire({ id: 'run', value: 'run' }, 0)
    a.acquire({ id: 'q1', deadline: 1000, mayQueue: true, value: 'q1' }, 0)
    a.acquire({ id: 'q2', deadline: 5000, mayQueue: true, value: 'q2' }, 0)
    expect(a.nextDeadline()).toBe(1000)
    expect(a.expire(1000).map((x) => x.entry.value)).toEqual(['q1'])
    expect(a.acquire({ id: 'late', deadline: 1000, mayQueue: true, value: 'late' }, 1000)).toEqual({ kind: 'rejected', reason: 'expired' })
    // expired entries met while handing out a slot come back as events too
    const ev = a.release('run', 6000)
    expect(ev).toMatchObject({ granted: [], expired: [{ entry: { id: 'q2' }, reason: 'deadline' }] })
  })

  it('cancels a queued or a running request', () => {
    const a = new Admission<null>({ slots: 1 })
    a.acquire({ id: 'run', value: null }, 0)
    a.acquire({ id: 'wait', mayQueue: true, value: null }, 0)
    a.acquire({ id: 'wait2', mayQueue: true, value: null }, 0)
    expect(a.cancel('wait', 1)).toEqual({ granted: [], expired: [] })
    expect(a.cancel('run', 2).granted.map((e) => e.id)).toEqual(['wait2'])
    expect(a.snapshot()).toEqual({ slotsBusy: 1, slotsTotal: 1, queueDepth: 0 })
  })

  it('follows a change of slots', () => {
    const a = new Admission<null>({ slots: 0 })
    expect(a.acquire({ id: 'a', value: null }, 0)).toEqual({ kind: 'busy', queueDepth: 0 })
    a.acquire({ id: 'a', mayQueue: true, value: null }, 0)
    a.acquire({ id: 'b', mayQueue: true, value: null }, 0)
    expect(a.setSlots(4, 1).granted.map((e) => e.id)).toEqual(['a', 'b'])
    a.setSlots(1, 2)
    expect(a.free).toBe(0)
    a.release('a', 3)
    expect(a.free).toBe(0)
    a.release('b', 3)
    expect(a.free).toBe(1)
  })
})
