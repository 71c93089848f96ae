/**
 * The dashboard's topology layout: where each host's node and label go in the picture. Pure and
 * dependency-free: the agent serves this module's build to the browser as `/ui/layout.js`, and
 * unit tests check it on synthetic meshes.
 *
 * Hosts sit on an ellipse that fills the picture, this host at the top and the others in name
 * order clockwise: every host is one hop from this one (the links this agent has), so no link
 * crosses a node, and each host keeps its place when one joins or leaves elsewhere. Labels go
 * outward: beside the node on the ellipse's flanks (where neighbours are stacked vertically),
 * above or below it at the top and bottom (where they stand side by side). The node radius
 * shrinks with the number of hosts so that neighbours never overlap; the label width is the
 * caller's (it cuts names to fit it).
 */

/** A host to place: its id, the name shown, and whether it is this agent. */
export interface LayoutHost {
  id: string
  name: string
  self: boolean
}

/** Where one host's label goes: the first line's baseline at (x, y), the next LABEL_LINE_PX below. */
export interface LabelPlace {
  x: number
  y: number
  anchor: 'start' | 'middle' | 'end'
}

export interface PlacedHost {
  id: string
  x: number
  y: number
  label: LabelPlace
}

export interface TopologyLayout {
  hosts: PlacedHost[]
  /** radius of every host's node */
  nodeRadius: number
}

/** Height of one label line, px (the label has two: name, then what it serves). */
export const LABEL_LINE_PX = 13
/** Lines of a label. */
export const LABEL_LINES = 2
/** Largest node radius, px. */
const MAX_NODE_RADIUS = 30
/** Smallest node radius, px: below it the load share no longer reads. */
const MIN_NODE_RADIUS = 9
/** Room between a node and its label, px. */
const LABEL_GAP = 6
/** Where labels turn from beside the node to above/below it: |cos| of the host's angle. */
const SIDE_LABEL_COS = 0.5

/** Places `hosts` in a `width` x `height` picture, labels at most `labelWidth` px wide (see the module's doc). */
export function layoutTopology (hosts: readonly LayoutHost[], width: number, height: number, labelWidth = 100): TopologyLayout {
  const ordered = [...hosts].sort((a, b) => (a.self === b.self ? 0 : a.self ? -1 : 1) || a.name.localeCompare(b.name) || a.id.localeCompare(b.id))
  const cx = width / 2
  const cy = height / 2
  const n = ordered.length
  const labelHeight = LABEL_LINES * LABEL_LINE_PX
  if (n === 0) return { hosts: [], nodeRadius: MAX_NODE_RADIUS }
  const angles = ordered.map((_, i) => -Math.PI / 2 + (2 * Math.PI * i) / n)
  // the node radius and the ellipse depend on each other: the ellipse leaves room for nodes and
  // labels, and neighbours on it keep three node radii between their centres
  let nodeRadius = MAX_NODE_RADIUS
  let rx = 0
  let ry = 0
  for (;;) {
    rx = Math.max(0, width / 2 - nodeRadius - LABEL_GAP - labelWidth)
    ry = Math.max(0, height / 2 - nodeRadius - LABEL_GAP - labelHeight)
    if (n === 1) break
    let gap = Infinity
    for (let i = 0; i < n; i++) {
      const a = angles[i]!
      const b = angles[(i + 1) % n]!
      gap = Math.min(gap, Math.hypot(rx * (Math.cos(a) - Math.cos(b)), ry * (Math.sin(a) - Math.sin(b))))
    }
    if (gap >= 3.2 * nodeRadius || nodeRadius <= MIN_NODE_RADIUS) break
    nodeRadius = Math.max(MIN_NODE_RADIUS, Math.min(nodeRadius - 1, Math.floor(gap / 3.2)))
  }
  const r = nodeRadius
  return {
    nodeRadius,
    hosts: ordered.map((h, i) => {
      const a = angles[i]!
      const x = n === 1 ? cx : round(cx + rx * Math.cos(a))
      const y = n === 1 ? cy : round(cy + ry * Math.sin(a))
      const cos = Math.cos(a)
      let label: LabelPlace
      if (n > 1 && Math.abs(cos) > SIDE_LABEL_COS) {
        // beside: the two lines centred on the node
        label = { x: round(x + Math.sign(cos) * (r + LABEL_GAP)), y: round(y - 2), anchor: cos > 0 ? 'start' : 'end' }
      } else if (n > 1 && Math.sin(a) < 0) {
        label = { x, y: round(y - r - LABEL_GAP - labelHeight + LABEL_LINE_PX - 3), anchor: 'middle' }
      } else {
        label = { x, y: round(y + r + LABEL_GAP + LABEL_LINE_PX - 3), anchor: 'middle' }
      }
      return { id: h.id, x, y, label }
    })
  }
}

/** The box a label takes, for overlap checks: x0, y0, x1, y1. */
export function labelBox (l: LabelPlace, labelWidth: number): [number, number, number, number] {
  const x0 = l.anchor === 'start' ? l.x : l.anchor === 'end' ? l.x - labelWidth : l.x - labelWidth / 2
  const top = l.y - LABEL_LINE_PX + 3
  return [x0, top, x0 + labelWidth, top + LABEL_LINES * LABEL_LINE_PX]
}

function round (v: number): number {
  return Math.round(v * 10) / 10
}
