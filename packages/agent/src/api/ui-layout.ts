/**
 * The dashboard's topology layout: where each host's node goes in the picture. Pure and
 * dependency-free: the agent serves this module's build to the browser as `/ui/layout.js`, and
 * unit tests check it on synthetic meshes.
 *
 * Hosts sit on one circle, this host at the top and the others in name order clockwise: every
 * host is one hop from this one (the links this agent has), so no edge crosses a node, and a
 * circle keeps each host's place when one joins or leaves elsewhere. The node radius shrinks with
 * the number of hosts so that neighbours never overlap (20 hosts fit a 1000x700 picture).
 */

/** A host to place: its id, the name shown, and whether it is this agent. */
export interface LayoutHost {
  id: string
  name: string
  self: boolean
}

export interface PlacedHost {
  id: string
  x: number
  y: number
}

export interface TopologyLayout {
  hosts: PlacedHost[]
  /** radius of every host's node */
  nodeRadius: number
}

/** Largest node radius, px. */
const MAX_NODE_RADIUS = 34
/** Smallest node radius, px: below it names no longer fit. */
const MIN_NODE_RADIUS = 10
/** Room kept outside the circle for the labels under the nodes, px. */
const LABEL_MARGIN = 34

/** Places `hosts` in a `width` x `height` picture (see the module's doc). */
export function layoutTopology (hosts: readonly LayoutHost[], width: number, height: number): TopologyLayout {
  const ordered = [...hosts].sort((a, b) => (a.self === b.self ? 0 : a.self ? -1 : 1) || a.name.localeCompare(b.name) || a.id.localeCompare(b.id))
  const cx = width / 2
  const cy = height / 2
  const n = ordered.length
  if (n === 0) return { hosts: [], nodeRadius: MAX_NODE_RADIUS }
  if (n === 1) return { hosts: [{ id: ordered[0]!.id, x: cx, y: cy }], nodeRadius: MAX_NODE_RADIUS }
  // the node radius and the circle's depend on each other: the circle fits the picture with the
  // nodes and labels, and neighbours on it (2R sin(pi/n) apart) keep a node's width between them
  let nodeRadius = MAX_NODE_RADIUS
  let ring = 0
  for (;;) {
    ring = Math.max(0, Math.min(width / 2, height / 2) - nodeRadius - LABEL_MARGIN)
    const gap = 2 * ring * Math.sin(Math.PI / n)
    if (gap >= 3 * nodeRadius || nodeRadius <= MIN_NODE_RADIUS) break
    nodeRadius = Math.max(MIN_NODE_RADIUS, Math.min(nodeRadius - 1, gap / 3))
  }
  return {
    nodeRadius,
    hosts: ordered.map((h, i) => {
      const angle = -Math.PI / 2 + (2 * Math.PI * i) / n
      return { id: h.id, x: round(cx + ring * Math.cos(angle)), y: round(cy + ring * Math.sin(angle)) }
    })
  }
}

function round (v: number): number {
  return Math.round(v * 10) / 10
}
