import type { ModelInfo, NodeRecord } from '@llmesh/protocol'
import { DEFAULT_CTX_SIZE, RUNNER_OVERHEAD_BYTES } from '../constants.js'
import { rendezvousOrder } from '../rendezvous.js'
import { footprint, gib } from './footprint.js'
import type { PlacementView } from './plan.js'
import { hostRoom } from './room.js'

/** One host of a split placement and the layers it holds. */
export interface SplitMember {
  peerId: string
  /** transformer blocks on this host */
  layers: number
  /** memory these layers take there (weights + their KV cache; the coordinator also the rest of the model and the overhead) */
  bytes: number
  /** the host's free model memory when planned */
  freeBytes: number
}

export type SplitPlan =
  | {
    ok: true
    /** the host that runs llama-server (it has the file and the most room); the others run rpc-server */
    coordinator: string
    /** the coordinator first, then the members by free room; layers sum to the model's */
    members: SplitMember[]
    /** the whole model's footprint */
    footprintBytes: number
    reasons: string[]
  }
  | {
    ok: false
    code: 'INSUFFICIENT_MEMORY' | 'MODEL_NOT_FOUND'
    message: string
    /** every reachable host considered, with its free memory and the layers it could hold */
    hosts: Array<{ peerId: string, name: string, freeBytes: number, layers: number }>
    needBytes?: number
    /**
     * false: the model can only run whole here (its header gives no block sizes, no host with
     * the file can coordinate, or no other host can take blocks); the caller's whole-model
     * figures say more then
     */
    splittable: boolean
  }

export interface SplitOptions {
  /** context of the coordinator's llama-server, tokens. @default DEFAULT_CTX_SIZE */
  ctxSize?: number
  /** split over the reachable hosts even where the layers do not fit */
  loadAnyway?: boolean
  /** hosts left out (tried, dead) */
  exclude?: Iterable<string>
}

/**
 * Where a model too big for any one host runs across several, by layer (pure; the same at
 * every entry that holds the same records):
 * - the coordinator runs llama-server and holds the weights outside the blocks (embeddings,
 *   output head), the runner's overhead and its share of the blocks: it needs the file, and it
 *   is the host with the file and the most free room (rendezvous tie-break);
 * - the others run rpc-server and hold blocks only: any reachable host with room (the weights
 *   reach them over RPC, or from their own cache);
 * - a block is the unit: its weights (`bytesPerLayer`, the largest block, every expert of a
 *   MoE layer counted: a host holds all experts of its layers) and its KV cache (the model's
 *   KV per token / layers x ctxSize) stay on one host;
 * - the fewest hosts, taken by free room (largest first) until their capacity in blocks covers
 *   the model; the blocks are then shared in proportion to capacity (largest remainders),
 *   never over a host's capacity.
 * Only hosts whose record says they can take a part (`split.coordinator`, `split.member`) do.
 * A model that fits one host with the file is planned on that one host alone. When the hosts'
 * capacity does not cover the model, INSUFFICIENT_MEMORY with the figures per host, unless
 * `loadAnyway` (then every reachable host takes a share in proportion to its free room).
 * A model without block figures (`layers`, `bytesPerLayer`) cannot be split: planned whole
 * or INSUFFICIENT_MEMORY.
 */
export function planSplit (model: string, view: PlacementView, opts: SplitOptions = {}): SplitPlan {
  const ctxSize = opts.ctxSize ?? DEFAULT_CTX_SIZE
  const exclude = new Set(opts.exclude ?? [])
  const usable = (n: NodeRecord): boolean => (n.peerId === view.selfPeerId || view.reachable.has(n.peerId)) && !exclude.has(n.peerId)
  const nodes = view.nodes.filter(usable)
  const withFile = nodes.filter((n) => n.models.some((m) => m.name === model))
  const info: ModelInfo | undefined = withFile[0]?.models.find((m) => m.name === model)
  if (info == null) return { ok: false, code: 'MODEL_NOT_FOUND', message: `no reachable host has model '${model}'`, hosts: [], splittable: false }
  // once the model fits no one host, only hosts that can run their part take one
  const coordinators = withFile.filter((n) => n.split?.coordinator === true)

  const fp = footprint(info, ctxSize)
  const free = new Map(nodes.map((n) => [n.peerId, hostRoom(n, view, ctxSize).free]))
  const byRoom = (xs: NodeRecord[]): NodeRecord[] => {
    const order = rendezvousOrder(model, xs, () => 1).map((n) => n.peerId)
    return [...xs].sort((a, b) => (free.get(b.peerId)! - free.get(a.peerId)!) || order.indexOf(a.peerId) - order.indexOf(b.peerId))
  }
  const whole = byRoom(withFile)[0]!
  if (fp.totalBytes <= free.get(whole.peerId)!) {
    const coordinatorFree = free.get(whole.peerId)!
    return {
      ok: true,
      coordinator: whole.peerId,
      members: [{ peerId: whole.peerId, layers: info.layers ?? 0, bytes: fp.totalBytes, freeBytes: coordinatorFree }],
      footprintBytes: fp.totalBytes,
      reasons: [`fits one host: needs ${gib(fp.totalBytes)} GiB, ${gib(coordinatorFree)} GiB free`]
    }
  }

  const layers = info.layers ?? 0
  const perLayer = info.bytesPerLayer
  const nameOf = (id: string): string => nodes.find((n) => n.peerId === id)?.name ?? id
  if (layers <= 0 || perLayer == null || perLayer <= 0 || coordinators.length === 0) {
    const why = coordinators.length === 0
      ? 'no host with the file can coordinate a split (it needs llama-server and an rpc-server binary)'
      : 'its GGUF header gives no block sizes, so it cannot be split'
    return {
      ok: false,
      code: 'INSUFFICIENT_MEMORY',
      message: `model '${model}' needs ${gib(fp.totalBytes)} GiB and fits no host (the most free with the file, '${nameOf(whole.peerId)}', has ${gib(free.get(whole.peerId)!)} GiB); ${why}`,
      hosts: nodes.map((n) => ({ peerId: n.peerId, name: n.name, freeBytes: free.get(n.peerId)!, layers: 0 })),
      needBytes: fp.totalBytes,
      splittable: false
    }
  }
  const coordinator = byRoom(coordinators)[0]!
  const coordinatorFree = free.get(coordinator.peerId)!
  // per block: its weights and its KV cache; the coordinator also holds the rest and the overhead
  const kvPerLayer = fp.kvBytes / layers
  const blockBytes = perLayer + kvPerLayer
  const rest = Math.max(0, info.otherBytes ?? fp.weightsBytes - perLayer * layers) + fp.overheadBytes
  const capacity = (n: NodeRecord): number => {
    const room = free.get(n.peerId)! - (n.peerId === coordinator.peerId ? rest : RUNNER_OVERHEAD_BYTES)
    return Math.max(0, Math.min(layers, Math.floor(room / blockBytes)))
  }
  const others = byRoom(nodes.filter((n) => n.peerId !== coordinator.peerId && n.split?.member === true))
  const chosen: NodeRecord[] = [coordinator]
  let total = capacity(coordinator)
  for (const n of others) {
    if (total >= layers) break
    const c = capacity(n)
    if (c === 0) continue
    chosen.push(n)
    total += c
  }
  const hosts = [coordinator, ...others].map((n) => ({ peerId: n.peerId, name: n.name, freeBytes: free.get(n.peerId)!, layers: capacity(n) }))
  let weights: number[]
  if (total >= layers) {
    weights = chosen.map(capacity)
  } else if (opts.loadAnyway === true) {
    chosen.splice(0, chosen.length, coordinator, ...others)
    weights = chosen.map((n) => Math.max(1, free.get(n.peerId)!))
  } else {
    const list = hosts.map((h) => `'${h.name}' ${gib(h.freeBytes)} GiB free, ${h.layers} blocks`).join('; ')
    return {
      ok: false,
      code: 'INSUFFICIENT_MEMORY',
      message: `model '${model}' needs ${gib(fp.totalBytes)} GiB (${layers} blocks of ${gib(blockBytes)} GiB with their KV cache, and ${gib(rest)} GiB on the coordinator); the reachable hosts hold ${total} of ${layers} blocks: ${list} (set loadAnyway or x-llmesh-load-anyway: 1 to load it anyway)`,
      hosts,
      needBytes: fp.totalBytes,
      splittable: others.length > 0
    }
  }
  const shares = proportional(layers, weights, total >= layers ? weights : undefined)
  const members: SplitMember[] = chosen.map((n, i) => ({
    peerId: n.peerId,
    layers: shares[i]!,
    bytes: Math.round(shares[i]! * blockBytes + (n.peerId === coordinator.peerId ? rest : RUNNER_OVERHEAD_BYTES)),
    freeBytes: free.get(n.peerId)!
  })).filter((m) => m.layers > 0 || m.peerId === coordinator.peerId)
  return {
    ok: true,
    coordinator: coordinator.peerId,
    members,
    footprintBytes: fp.totalBytes,
    reasons: [
      `split over ${members.length} hosts: needs ${gib(fp.totalBytes)} GiB, the most free host with the file has ${gib(coordinatorFree)} GiB`,
      `layers ${members.map((m) => `${nameOf(m.peerId)}=${m.layers}`).join(' ')}`,
      ...(total < layers ? ['load anyway: the hosts hold fewer blocks than the model has'] : [])
    ]
  }
}

/**
 * `total` shared in proportion to `weights` by largest remainders, each share at most its cap
 * (when caps are given and cover the total).
 */
function proportional (total: number, weights: number[], caps?: number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0)
  const exact = weights.map((w) => total * w / sum)
  const shares = exact.map((x, i) => Math.min(Math.floor(x), caps?.[i] ?? Infinity))
  let left = total - shares.reduce((a, b) => a + b, 0)
  const order = exact.map((x, i) => ({ i, r: x - Math.floor(x) })).sort((a, b) => b.r - a.r || a.i - b.i)
  while (left > 0) {
    let placed = false
    for (const { i } of order) {
      if (left === 0) break
      if (shares[i]! < (caps?.[i] ?? Infinity)) { shares[i]!++; left--; placed = true }
    }
    if (!placed) break
  }
  return shares
}
