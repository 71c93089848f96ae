import type { EffectivePin, Hardware, NodeRecord, Placement, PlacementsEntry, RunnerInfo } from '@llmesh/protocol'
import { DEFAULT_CTX_SIZE, PLACEMENT_MEMORY_SHARE } from '../constants.js'
import { footprintBytes } from './footprint.js'

/** What `hostModelMemBytes` reads of the placement config. */
export interface ModelMemConfig {
  memoryBytes?: number | undefined
  /** @default PLACEMENT_MEMORY_SHARE (0.75) */
  memoryShare?: number
}

/**
 * Memory a host gives to the models it runs, bytes, as it publishes it (Hardware.modelMemBytes):
 * the config's `memoryBytes` when set; else the GPUs' total VRAM; else `memoryShare` of RAM.
 * Apple GPUs report unified memory, which is the RAM: it gets the share too, since the OS and
 * the agent live in it.
 */
export function hostModelMemBytes (hw: Hardware, cfg: ModelMemConfig = {}): number {
  if (cfg.memoryBytes != null) return Math.max(0, cfg.memoryBytes)
  const share = cfg.memoryShare ?? PLACEMENT_MEMORY_SHARE
  const gpus = hw.gpus ?? []
  if (gpus.length > 0) {
    const vram = gpus.filter((g) => g.vendor !== 'apple').reduce((n, g) => n + g.memTotalBytes, 0)
    const unified = gpus.filter((g) => g.vendor === 'apple').reduce((n, g) => Math.max(n, g.memTotalBytes), 0)
    const total = vram + Math.floor(unified * share)
    if (total > 0) return total
  }
  return Math.floor(hw.memBytes * share)
}

/** How much model memory a host has, as its record and placements say. */
export interface HostRoom {
  peerId: string
  /** memory the host gives to models: hardware.modelMemBytes, else PLACEMENT_MEMORY_SHARE of RAM */
  budget: number
  /** taken by its live runners and by the starts it planned that have no runner yet */
  used: number
  /** budget - used, never below 0 */
  free: number
  /** of `used`, what evicting its unpinned runners would give back */
  evictable: number
}

/** What the room of a host is computed from: record content only, the same at every entry. */
export interface RoomView {
  nodes: readonly NodeRecord[]
  placements: ReadonlyMap<string, PlacementsEntry>
  pins: readonly EffectivePin[]
}

const live = (r: RunnerInfo): boolean => r.state !== 'stopped' && r.state !== 'failed'
const starting = (p: Placement): boolean => p.state === 'planned' || p.state === 'loading'

/**
 * A split member's part (reason `split`) whose coordinator no longer plans it with this host
 * (its placement gone, failed, or naming other hosts): the member stops it within a round, so
 * its memory counts as free already (a plan made in between would find no room otherwise).
 */
function orphanPart (host: string, p: Placement, view: Pick<RoomView, 'placements'>): boolean {
  if (p.reason !== 'split' || p.split == null) return false
  const coordinator = p.split.coordinator
  const plan = view.placements.get(coordinator)?.placements.find((x) => x.model === p.model && x.split?.coordinator === coordinator)
  return plan == null || plan.state === 'failed' || plan.state === 'evicting' || !plan.split!.hosts.some((h) => h.peerId === host)
}

/**
 * The room of `node`: its budget, what its live runners and planned starts take, and what
 * evicting its unpinned runners would free. A runner's size is its placement's footprintBytes
 * when the placement carries one, else the footprint of its model (matched by name in the
 * record's models) at `ctxSize`; a runner of a model the record does not list counts its
 * overhead only (its size is unknown here; the host checks again before it loads).
 */
export function hostRoom (node: NodeRecord, view: RoomView, ctxSize: number = DEFAULT_CTX_SIZE): HostRoom {
  const budget = Math.max(0, node.hardware.modelMemBytes ?? Math.floor(node.hardware.memBytes * PLACEMENT_MEMORY_SHARE))
  const placements = view.placements.get(node.peerId)?.placements ?? []
  const sizeOf = (model: string, p: Placement | undefined): number => {
    if (p?.footprintBytes != null) return p.footprintBytes
    const info = node.models.find((m) => m.name === model)
    return footprintBytes(info ?? { name: model, sizeBytes: 0, digest: '', format: 'gguf' }, ctxSize)
  }
  let used = 0
  let evictable = 0
  const runnerIds = new Set<string>()
  for (const r of node.runners) {
    if (!live(r)) continue
    runnerIds.add(r.id)
    const p = placements.find((x) => x.runnerId === r.id)
    if (p != null && orphanPart(node.peerId, p, view)) continue
    const size = sizeOf(r.model, p)
    used += size
    if (!isPinned(node.peerId, r, p, view)) evictable += size
  }
  for (const p of placements) {
    if (starting(p) && (p.runnerId == null || !runnerIds.has(p.runnerId)) && !orphanPart(node.peerId, p, view)) used += sizeOf(p.model, p)
  }
  return { peerId: node.peerId, budget, used, free: Math.max(0, budget - used), evictable }
}

/**
 * Whether a runner on `host` is kept from eviction: a pin names its model on this host, its
 * placement's reason is `config` (started with the agent) or it runs on the only host of the view
 * with a live copy of a model pinned anywhere.
 */
export function isPinned (host: string, runner: Pick<RunnerInfo, 'model'>, placement: Pick<Placement, 'reason'> | undefined, view: RoomView): boolean {
  if (placement?.reason === 'config') return true
  const pins = view.pins.filter((p) => p.model === runner.model)
  if (pins.some((p) => p.host === host)) return true
  if (!pins.some((p) => p.host == null)) return false
  const hosts = view.nodes.filter((n) => n.runners.some((r) => r.model === runner.model && live(r))).length
  return hosts <= 1
}
