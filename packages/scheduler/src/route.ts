import type { NodeRecord } from '@llmesh/protocol'

/** What the router knows when it decides: a snapshot, never live state. */
export interface RouteInput {
  model: string
  /** every node record of the converged view, own included */
  nodes: NodeRecord[]
  selfPeerId: string
  /** peers this agent can reach now */
  reachable: ReadonlySet<string>
  /** requests this router has in flight per peer id */
  inflight: ReadonlyMap<string, number>
  /** injected randomness for tie breaks, in [0, 1) */
  random: () => number
}

export interface RouteTarget {
  peerId: string
  runnerId: string
  /** why this target: shown in the x-llmesh-route header and the debug log */
  reasons: string[]
}

export type RouteResult =
  | { ok: true, target: RouteTarget }
  | { ok: false, code: 'MODEL_NOT_FOUND' | 'NO_CAPACITY', message: string, available: string[] }

/**
 * Picks the host for one request: among reachable hosts with a ready runner of the model, the
 * one with the lowest load (in-flight / slots); the local host wins a tie, then chance decides.
 */
export function route (input: RouteInput): RouteResult {
  const available = new Set<string>()
  const candidates: Array<{ peerId: string, runnerId: string, load: number, local: boolean }> = []
  let loading = 0
  for (const node of input.nodes) {
    const local = node.peerId === input.selfPeerId
    if (!local && !input.reachable.has(node.peerId)) continue
    for (const m of node.models) available.add(m.name)
    for (const runner of node.runners) {
      available.add(runner.model)
      if (runner.model !== input.model) continue
      if (runner.state !== 'ready' && runner.state !== 'busy') {
        loading++
        continue
      }
      const load = (input.inflight.get(node.peerId) ?? 0) / Math.max(1, runner.slots)
      candidates.push({ peerId: node.peerId, runnerId: runner.id, load, local })
    }
  }
  const names = [...available].sort()
  if (candidates.length === 0) {
    if (loading > 0) return { ok: false, code: 'NO_CAPACITY', message: `model '${input.model}' is still loading`, available: names }
    return { ok: false, code: 'MODEL_NOT_FOUND', message: `no host in the mesh serves model '${input.model}'`, available: names }
  }
  let best = candidates[0]!
  let ties = 1
  for (const c of candidates.slice(1)) {
    const better = c.load < best.load || (c.load === best.load && c.local && !best.local)
    const tie = c.load === best.load && c.local === best.local
    if (better) {
      best = c
      ties = 1
    } else if (tie) {
      // reservoir sampling keeps every tied candidate equally likely
      ties++
      if (input.random() * ties < 1) best = c
    }
  }
  return {
    ok: true,
    target: {
      peerId: best.peerId,
      runnerId: best.runnerId,
      reasons: [
        `strategy=least-loaded`,
        `candidates=${candidates.length}`,
        `load=${best.load.toFixed(2)}`,
        best.local ? 'local' : 'remote'
      ]
    }
  }
}
