import { describe, expect, it } from 'vitest'
import { rendezvousOrder } from './rendezvous.js'

const hosts = (n: number, slots = 2): Array<{ peerId: string, slots: number }> =>
  Array.from({ length: n }, (_, i) => ({ peerId: `peer-${i}`, slots }))
const w = (h: { slots: number }): number => h.slots

describe('rendezvousOrder', () => {
  it('gives every router the same answer, whatever order it lists the hosts in', () => {
    const a = hosts(5)
    const b = [...a].reverse()
    for (let k = 0; k < 50; k++) {
      expect(rendezvousOrder(`conv-${k}`, a, w).map((h) => h.peerId)).toEqual(rendezvousOrder(`conv-${k}`, b, w).map((h) => h.peerId))
    }
  })

  it('spreads keys over hosts in proportion to their weight', () => {
    const list = [{ peerId: 'a', slots: 1 }, { peerId: 'b', slots: 1 }, { peerId: 'c', slots: 2 }]
    const count: Record<string, number> = { a: 0, b: 0, c: 0 }
    for (let k = 0; k < 4000; k++) count[rendezvousOrder(`k${k}`, list, w)[0]!.peerId]!++
    expect(count['a']! / 4000).toBeCloseTo(0.25, 1)
    expect(count['b']! / 4000).toBeCloseTo(0.25, 1)
    expect(count['c']! / 4000).toBeCloseTo(0.5, 1)
  })

  it('moves only the keys of a host that leaves', () => {
    const all = hosts(4)
    const without = all.filter((h) => h.peerId !== 'peer-2')
    let moved = 0
    for (let k = 0; k < 1000; k++) {
      const before = rendezvousOrder(`k${k}`, all, w)[0]!.peerId
      const after = rendezvousOrder(`k${k}`, without, w)[0]!.peerId
      if (before !== 'peer-2') expect(after).toBe(before)
      else moved++
    }
    expect(moved).toBeGreaterThan(150)
    expect(moved).toBeLessThan(350)
  })
})
