import { describe, expect, it } from 'vitest'
import { layoutTopology, type LayoutHost } from './ui-layout.js'

function mesh (n: number): LayoutHost[] {
  return Array.from({ length: n }, (_, i) => ({ id: `peer-${i}`, name: `host-${String(n - i).padStart(2, '0')}`, self: i === 3 % n }))
}

describe('layoutTopology', () => {
  for (const n of [1, 2, 3, 8, 20]) {
    it(`places ${n} hosts inside a 1000x700 picture, none overlapping, this host at the top`, () => {
      const hosts = mesh(n)
      const { hosts: placed, nodeRadius } = layoutTopology(hosts, 1000, 700)
      expect(placed.map((p) => p.id).sort()).toEqual(hosts.map((h) => h.id).sort())
      for (const p of placed) {
        expect(p.x - nodeRadius).toBeGreaterThanOrEqual(0)
        expect(p.x + nodeRadius).toBeLessThanOrEqual(1000)
        expect(p.y - nodeRadius).toBeGreaterThanOrEqual(0)
        expect(p.y + nodeRadius).toBeLessThanOrEqual(700)
      }
      for (let i = 0; i < placed.length; i++) {
        for (let j = i + 1; j < placed.length; j++) {
          const d = Math.hypot(placed[i]!.x - placed[j]!.x, placed[i]!.y - placed[j]!.y)
          expect(d, `${placed[i]!.id} and ${placed[j]!.id}`).toBeGreaterThanOrEqual(2 * nodeRadius)
        }
      }
      const self = placed.find((p) => p.id === hosts.find((h) => h.self)!.id)!
      expect(Math.min(...placed.map((p) => p.y))).toBe(self.y)
    })
  }

  it('keeps 20 hosts large enough to read and orders the others by name', () => {
    const { hosts: placed, nodeRadius } = layoutTopology(mesh(20), 1000, 700)
    expect(nodeRadius).toBeGreaterThanOrEqual(12)
    // clockwise from the top: after this host, host-01, host-02, ...
    expect(placed[1]!.id).toBe('peer-19')
    expect(placed[2]!.id).toBe('peer-18')
  })

  it('answers the same layout for the same hosts in any order', () => {
    const hosts = mesh(7)
    expect(layoutTopology([...hosts].reverse(), 800, 600)).toEqual(layoutTopology(hosts, 800, 600))
  })
})
