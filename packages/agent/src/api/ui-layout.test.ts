import { describe, expect, it } from 'vitest'
import { labelBox, layoutTopology, type LayoutHost, type TopologyLayout } from './ui-layout.js'

function mesh (n: number): LayoutHost[] {
  return Array.from({ length: n }, (_, i) => ({ id: `peer-${i}`, name: `host-${String(n - i).padStart(2, '0')}`, self: i === 3 % n }))
}

type Box = [number, number, number, number]
const overlaps = (a: Box, b: Box): boolean => a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3]
const nodeBox = (x: number, y: number, r: number): Box => [x - r, y - r, x + r, y + r]

/** Every node and label inside the picture; no two nodes, no two labels, no label and node overlap. */
function expectReadable (l: TopologyLayout, width: number, height: number, labelWidth: number): void {
  const r = l.nodeRadius
  const nodes = l.hosts.map((h) => ({ id: h.id, box: nodeBox(h.x, h.y, r) }))
  const labels = l.hosts.map((h) => ({ id: h.id, box: labelBox(h.label, labelWidth) }))
  for (const { id, box } of [...nodes, ...labels]) {
    expect(box[0], id).toBeGreaterThanOrEqual(0)
    expect(box[1], id).toBeGreaterThanOrEqual(0)
    expect(box[2], id).toBeLessThanOrEqual(width)
    expect(box[3], id).toBeLessThanOrEqual(height)
  }
  for (let i = 0; i < l.hosts.length; i++) {
    for (let j = i + 1; j < l.hosts.length; j++) {
      const [a, b] = [l.hosts[i]!, l.hosts[j]!]
      expect(Math.hypot(a.x - b.x, a.y - b.y), `nodes ${a.id} ${b.id}`).toBeGreaterThanOrEqual(2 * r)
      expect(overlaps(labels[i]!.box, labels[j]!.box), `labels ${a.id} ${b.id}`).toBe(false)
    }
    for (let j = 0; j < l.hosts.length; j++) {
      expect(overlaps(labels[i]!.box, nodes[j]!.box), `label ${l.hosts[i]!.id} on node ${l.hosts[j]!.id}`).toBe(false)
    }
  }
}

describe('layoutTopology', () => {
  for (const n of [1, 2, 3, 5, 8]) {
    it(`places ${n} hosts readably in a 560x400 picture, this host at the top`, () => {
      const hosts = mesh(n)
      const layout = layoutTopology(hosts, 560, 400, 120)
      expect(layout.hosts.map((p) => p.id).sort()).toEqual(hosts.map((h) => h.id).sort())
      expectReadable(layout, 560, 400, 120)
      const self = layout.hosts.find((p) => p.id === hosts.find((h) => h.self)!.id)!
      expect(Math.min(...layout.hosts.map((p) => p.y))).toBe(self.y)
    })
  }

  it('places 20 hosts readably across a 1000x640 picture (the page at 1000 px)', () => {
    const layout = layoutTopology(mesh(20), 976, 640, 90)
    expectReadable(layout, 976, 640, 90)
    expect(layout.nodeRadius).toBeGreaterThanOrEqual(14)
  })

  it('orders the others by name, clockwise from this host', () => {
    const { hosts: placed } = layoutTopology(mesh(20), 976, 640, 90)
    expect(placed[0]!.id).toBe('peer-3')
    expect(placed[1]!.id).toBe('peer-19') // host-01
    expect(placed[2]!.id).toBe('peer-18')
    expect(placed[1]!.x).toBeGreaterThan(placed[0]!.x)
  })

  it('answers the same layout for the same hosts in any order', () => {
    const hosts = mesh(7)
    expect(layoutTopology([...hosts].reverse(), 800, 600)).toEqual(layoutTopology(hosts, 800, 600))
  })
})
