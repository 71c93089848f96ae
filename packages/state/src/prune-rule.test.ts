import { describe, expect, it } from 'vitest'
import type { NodeRecord } from '@llmesh/protocol'
import { mayPrune, pruneRule, type PruneFacts } from './prune-rule.js'

const PRUNE_AFTER = 600_000
const record = (updatedAt: number): NodeRecord => ({ peerId: 'b', updatedAt } as unknown as NodeRecord)
const facts = (over: Partial<PruneFacts> = {}): PruneFacts => ({ self: 'a', now: 1_000_000, pruneAfterMs: PRUNE_AFTER, isUsable: () => false, ...over })

describe('the pruning rule', () => {
  it('never prunes our own entry, nor a peer alive or suspect here, however old its record', () => {
    expect(mayPrune('a', record(0), facts())).toBe(false)
    expect(mayPrune('a', undefined, facts())).toBe(false)
    expect(mayPrune('b', record(0), facts({ isUsable: (p) => p === 'b' }))).toBe(false)
    expect(mayPrune('b', undefined, facts({ isUsable: (p) => p === 'b' }))).toBe(false)
  })

  it('prunes an entry without a valid record at once', () => {
    expect(mayPrune('junk', undefined, facts())).toBe(true)
  })

  it('prunes a silent peer once its record is pruneAfterMs old, not a millisecond before', () => {
    const now = 1_000_000
    expect(mayPrune('b', record(now - PRUNE_AFTER + 1), facts({ now }))).toBe(false)
    expect(mayPrune('b', record(now - PRUNE_AFTER), facts({ now }))).toBe(true)
  })

  it('pruneRule reads the facts at each call and ignores the sender', () => {
    let now = 0
    const rule = pruneRule(() => facts({ now }))
    expect(rule('b', record(0), 'c')).toBe(false)
    now = PRUNE_AFTER
    expect(rule('b', record(0), 'c')).toBe(true)
    expect(rule('b', record(0))).toBe(true)
  })
})
