import { runnerServes, type NodeRecord, type Placement, type RunnerInfo } from '@llmesh/protocol'
import type { ReportingPeer } from '../claims.js'
import { DEFAULT_CTX_SIZE, IDLE_UNLOAD_MS, SCALE_DOWN_AFTER_MS, SCALE_UP_AFTER_MS } from '../constants.js'
import { rendezvousOrder } from '../rendezvous.js'
import { gib } from './footprint.js'
import { placementCandidates, type PlacementView } from './plan.js'
import { isPinned } from './room.js'

/** What demand-driven replicas and idle unloading decide on; `now` on the clock of `peers`. */
export interface ReplicaInput {
  view: PlacementView
  /** every peer membership knows, the own host included, with its last metrics (per-model figures in `metrics.models`) */
  peers: readonly ReportingPeer[]
  config: {
    /** @default SCALE_UP_AFTER_MS */
    scaleUpAfterMs?: number
    /** @default SCALE_DOWN_AFTER_MS */
    scaleDownAfterMs?: number
    /** @default IDLE_UNLOAD_MS (0, off) */
    idleUnloadMs?: number
  }
  now: number
  /** @default DEFAULT_CTX_SIZE */
  ctxSize?: number
}

/** Since when each model's queue has outgrown its slots, ms; pass the returned one to the next call. */
export interface ReplicaState {
  pressureSince: ReadonlyMap<string, number>
}

/** Since when each own runner has been idle, ms; pass the returned one to the next call. */
export interface IdleState {
  idleSince: ReadonlyMap<string, number>
}

export interface ReplicaStart {
  model: string
  peerId: string
  reasons: string[]
}


const live = (r: RunnerInfo): boolean => r.state !== 'stopped' && r.state !== 'failed'
const isReady = (r: RunnerInfo): boolean => r.state === 'ready' || r.state === 'busy'
const pendingPlacement = (p: Placement): boolean => p.state === 'planned' || p.state === 'loading'

/**
 * One more host for each model whose reachable hosts together have had more requests waiting
 * than slots, continuously, for scaleUpAfterMs: the first of `placementCandidates` among the
 * hosts with the file that do not run it or plan it, where it fits in free memory (a replica
 * never evicts: two models' demand would stop each other in turn). At most one per model per
 * call, none while a start of that model is under way anywhere, and the pressure clock starts
 * again after each. Every agent runs this on its own view; only the host named acts, so one
 * decision starts one runner.
 */
export function decideReplicas (input: ReplicaInput, state: ReplicaState): { start: ReplicaStart[], state: ReplicaState } {
  const { view, now } = input
  const after = input.config.scaleUpAfterMs ?? SCALE_UP_AFTER_MS
  const reachable = (peerId: string): boolean => peerId === view.selfPeerId || view.reachable.has(peerId)
  const demand = new Map<string, { slots: number, queue: number }>()
  for (const p of input.peers) {
    if (p.state === 'dead' || p.state === 'left' || !reachable(p.peerId)) continue
    for (const m of p.metrics.models ?? []) {
      const d = demand.get(m.model) ?? { slots: 0, queue: 0 }
      d.slots += Math.max(0, m.slots)
      d.queue += Math.max(0, m.queue)
      demand.set(m.model, d)
    }
  }
  const since = new Map<string, number>()
  const start: ReplicaStart[] = []
  for (const [model, d] of [...demand].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)) {
    if (d.queue <= d.slots) continue
    const from = state.pressureSince.get(model) ?? now
    since.set(model, from)
    if (now - from < after || startingAnywhere(model, view)) continue
    const runs = (n: NodeRecord): boolean =>
      n.runners.some((r) => r.model === model && live(r)) ||
      (view.placements.get(n.peerId)?.placements ?? []).some((p) => p.model === model && p.state !== 'failed')
    const best = placementCandidates(model, view, input.ctxSize ?? DEFAULT_CTX_SIZE, (n) => !runs(n))[0]
    if (best == null || best.fit !== 0) continue
    start.push({ model, peerId: best.node.peerId, reasons: ['replica', `queue=${d.queue}>slots=${d.slots} for ${now - from}ms`, `free=${gib(best.room.free)}GiB`] })
    since.set(model, now)
  }
  return { start, state: { pressureSince: since } }
}

/** A runner or placement of `model` is starting or loading on some host of the view. */
function startingAnywhere (model: string, view: PlacementView): boolean {
  return view.nodes.some((n) => n.runners.some((r) => r.model === model && (r.state === 'starting' || r.state === 'loading'))) ||
    [...view.placements.values()].some((e) => e.placements.some((p) => p.model === model && pendingPlacement(p)))
}

/**
 * The own runners idle now and since when: ready, and the own host reports no busy slot and
 * no queue for their model (the host's totals when it reports no per-model figures).
 */
function trackIdle (input: ReplicaInput, prev: ReadonlyMap<string, number>): { self: NodeRecord | undefined, idleSince: Map<string, number> } {
  const { view, now } = input
  const self = view.nodes.find((n) => n.peerId === view.selfPeerId)
  const metrics = input.peers.find((p) => p.peerId === view.selfPeerId)?.metrics
  const idleSince = new Map<string, number>()
  for (const r of self?.runners ?? []) {
    // an rpc-server's blocks go with its coordinator: it stops when the coordinator's placement goes
    if (!isReady(r) || !runnerServes(r)) continue
    const figures = metrics?.models?.find((m) => m.model === r.model)
    const idle = figures != null
      ? figures.busy <= 0 && figures.queue <= 0
      : (metrics?.slotsBusy ?? 0) <= 0 && (metrics?.queueDepth ?? 0) <= 0
    if (idle) idleSince.set(r.id, prev.get(r.id) ?? now)
  }
  return { self, idleSince }
}

/**
 * The own runners to stop because demand went: a runner placed as a `replica`, idle for
 * scaleDownAfterMs, while another reachable host's placement of the model is ready. When
 * every ready copy is a replica, the first of them in the rendezvous order of the model
 * stays, so that replicas idle at the same time do not all stop at once.
 */
export function scaleDown (input: ReplicaInput, state: IdleState): { stop: string[], state: IdleState } {
  const { view, now } = input
  const after = input.config.scaleDownAfterMs ?? SCALE_DOWN_AFTER_MS
  const { self, idleSince } = trackIdle(input, state.idleSince)
  const own = view.placements.get(view.selfPeerId)?.placements ?? []
  const stop: string[] = []
  for (const r of self?.runners ?? []) {
    const since = idleSince.get(r.id)
    const p = own.find((x) => x.runnerId === r.id)
    if (since == null || p?.reason !== 'replica' || now - since < after) continue
    const ready = [...view.placements.values()]
      .filter((e) => e.peerId === view.selfPeerId || view.reachable.has(e.peerId))
      .flatMap((e) => e.placements.filter((x) => x.model === r.model && x.state === 'ready').map((x) => ({ peerId: e.peerId, reason: x.reason })))
    const others = ready.filter((x) => x.peerId !== view.selfPeerId)
    if (others.length === 0) continue
    const keeper = others.some((x) => x.reason !== 'replica') ? undefined : rendezvousOrder(r.model, ready, () => 1)[0]
    if (keeper?.peerId === view.selfPeerId) continue
    stop.push(r.id)
  }
  return { stop, state: { idleSince } }
}

/**
 * With idleUnloadMs > 0: the own runners idle that long, unless pinned (see isPinned) or
 * started with the agent (`config` placements): Ollama's keep-alive, for memory that other
 * models may want.
 */
export function idleUnload (input: ReplicaInput, state: IdleState): { stop: string[], state: IdleState } {
  const { view, now } = input
  const after = input.config.idleUnloadMs ?? IDLE_UNLOAD_MS
  const { self, idleSince } = trackIdle(input, state.idleSince)
  if (after <= 0 || self == null) return { stop: [], state: { idleSince } }
  const own = view.placements.get(view.selfPeerId)?.placements ?? []
  const stop: string[] = []
  for (const r of self.runners) {
    const since = idleSince.get(r.id)
    if (since == null || now - since < after) continue
    const p = own.find((x) => x.runnerId === r.id)
    if (isPinned(self.peerId, r, p, view)) continue
    stop.push(r.id)
  }
  return { stop, state: { idleSince } }
}
