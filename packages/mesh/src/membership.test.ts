import { describe, expect, it } from 'vitest'
import type { Heartbeat } from '@llmesh/protocol'
import { Membership, LAN_TIMINGS } from './membership.js'

const metrics = { slotsBusy: 0, slotsTotal: 2, queueDepth: 0, tokensPerSec: 0, latencyMs: 0, successRate: 1, claims: {} }
const hb = (seq: number, incarnation = 1, status: Heartbeat['status'] = 'alive'): Heartbeat => ({ v: 1, incarnation, seq, status, metrics })

function clock (): { now: () => number, advance: (ms: number) => void } {
  let t = 1_000_000
  return { now: () => t, advance: (ms) => { t += ms } }
}

describe('Membership', () => {
  it('goes alive -> suspect -> dead with silence, and back to alive on the next heartbeat', () => {
    const c = clock()
    const m = new Membership(LAN_TIMINGS, c.now)
    m.heard('p', hb(1))
    expect(m.get('p')?.state).toBe('alive')
    c.advance(LAN_TIMINGS.suspectAfterMs)
    expect(m.get('p')?.state).toBe('suspect')
    expect(m.isUsable('p')).toBe(true)
    c.advance(LAN_TIMINGS.deadAfterMs - LAN_TIMINGS.suspectAfterMs)
    expect(m.get('p')?.state).toBe('dead')
    expect(m.isUsable('p')).toBe(false)
    expect(m.heard('p', hb(2))).toBe(true)
    expect(m.get('p')?.state).toBe('alive')
  })

  it('rides out a 1 s flap: never dead, hardly suspect', () => {
    const c = clock()
    const m = new Membership(LAN_TIMINGS, c.now)
    let seq = 0
    for (let t = 0; t < 5000; t += 500) { m.heard('p', hb(++seq)); c.advance(500) }
    c.advance(1000) // the flap: two heartbeats lost
    expect(m.get('p')?.state).not.toBe('dead')
    m.heard('p', hb(seq + 3))
    expect(m.get('p')?.state).toBe('alive')
  })

  it('drops stale heartbeats, and lets a restarted peer (new incarnation) in at seq 1', () => {
    const c = clock()
    const m = new Membership(LAN_TIMINGS, c.now)
    expect(m.heard('p', hb(5, 10))).toBe(true)
    expect(m.heard('p', hb(4, 10))).toBe(false)
    expect(m.heard('p', hb(5, 10))).toBe(false)
    expect(m.heard('p', hb(99, 9))).toBe(false)
    expect(m.heard('p', hb(1, 11))).toBe(true)
    expect(m.get('p')?.incarnation).toBe(11)
  })

  it('marks a graceful leave as left, and forgets peers after pruneAfterMs', () => {
    const c = clock()
    const m = new Membership(LAN_TIMINGS, c.now)
    m.heard('p', hb(1))
    m.heard('q', hb(1))
    m.heard('p', hb(2, 1, 'left'))
    expect(m.get('p')?.state).toBe('left')
    expect(m.isUsable('p')).toBe(false)
    c.advance(LAN_TIMINGS.pruneAfterMs)
    expect(m.prune().sort()).toEqual(['p', 'q'])
    expect(m.list()).toEqual([])
  })

  it('refuses timings that contradict each other', () => {
    expect(() => new Membership({ suspectAfterMs: 5000, deadAfterMs: 4000, pruneAfterMs: 10_000 }, Date.now)).toThrow(/suspectAfterMs < deadAfterMs/)
  })
})
