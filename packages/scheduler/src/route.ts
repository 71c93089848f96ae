import type { NodeRecord } from '@llmesh/protocol'
import type { CircuitState, RankedTarget, RoundRobinState, TargetMetrics } from './cluster-view.js'
import { rank, type RankTuning } from './rank.js'
import type { Strategy } from './strategy.js'

/**
 * The first router's call shape, kept so existing callers work unchanged: a thin wrapper
 * around `rank()` that returns its best target only. New callers use `rank()`, which returns
 * every target best first (for failover) and the round-robin state.
 */
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
  /** per-peer metrics; none means routing on claims and node records alone */
  metrics?: ReadonlyMap<string, TargetMetrics>
  /** injected clock, ms. @default 0 (then every heartbeatAt must be on the same clock) */
  now?: number
  strategy?: Strategy
  priority?: number
  prefixKey?: string
  exclude?: Iterable<string>
  circuits?: ReadonlyMap<string, CircuitState>
  roundRobin?: RoundRobinState
  tuning?: RankTuning
}

export interface RouteTarget {
  peerId: string
  runnerId: string
  /** why this target: shown in the x-llmesh-route header and the debug log */
  reasons: string[]
}

export type RouteResult =
  | { ok: true, target: RouteTarget, targets: RankedTarget[] }
  | { ok: false, code: 'MODEL_NOT_FOUND' | 'NO_CAPACITY', message: string, available: string[] }

/** Picks the best host for one request; see `rank()` for how. */
export function route (input: RouteInput): RouteResult {
  const r = rank({
    view: { nodes: input.nodes, metrics: input.metrics ?? new Map() },
    request: {
      model: input.model,
      ...(input.strategy != null ? { strategy: input.strategy } : {}),
      ...(input.priority != null ? { priority: input.priority } : {}),
      ...(input.prefixKey != null ? { prefixKey: input.prefixKey } : {}),
      ...(input.exclude != null ? { exclude: input.exclude } : {})
    },
    selfPeerId: input.selfPeerId,
    reachable: input.reachable,
    inflight: input.inflight,
    random: input.random,
    now: input.now ?? 0,
    ...(input.circuits != null ? { circuits: input.circuits } : {}),
    ...(input.roundRobin != null ? { roundRobin: input.roundRobin } : {})
  }, input.tuning)
  if (!r.ok) return { ok: false, code: r.code, message: r.message, available: r.available }
  const best = r.targets[0]!
  return { ok: true, target: { peerId: best.peerId, runnerId: best.runnerId, reasons: best.reasons }, targets: r.targets }
}
