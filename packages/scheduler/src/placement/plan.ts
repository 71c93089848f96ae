import type { EffectivePin, NodeRecord, PlacementsEntry } from '@llmesh/protocol'
import { DEFAULT_CTX_SIZE } from '../constants.js'
import { rendezvousOrder } from '../rendezvous.js'
import { footprint, gib } from './footprint.js'
import { hostRoom, type HostRoom } from './room.js'

/** What placement decides on: records and placements of the cluster document, and who is reachable. */
export interface PlacementView {
  selfPeerId: string
  /** every node record of the cluster document, own included */
  nodes: readonly NodeRecord[]
  /** the placements section, per owner host */
  placements: ReadonlyMap<string, PlacementsEntry>
  /** the pins in effect (`effectivePins()`) */
  pins: readonly EffectivePin[]
  /** peers that can be asked now; the own peer is always reachable */
  reachable: ReadonlySet<string>
}

export interface ColdPlanOptions {
  /** plan on the host with the most room even where the model does not fit. @default false */
  loadAnyway?: boolean
  /** context the model is planned for, tokens. @default DEFAULT_CTX_SIZE (4096) */
  ctxSize?: number
  /** hosts not to plan on (a request's hosts already tried, open circuits). @default none */
  exclude?: Iterable<string>
}

export type ColdPlan =
  | {
    ok: true
    peerId: string
    /** what the model will take there */
    footprintBytes: number
    /** that host's free model memory now */
    freeBytes: number
    /** what it has to evict first (0: it fits in free memory) */
    evictBytes: number
    reasons: string[]
  }
  | {
    ok: false
    code: 'INSUFFICIENT_MEMORY'
    message: string
    needBytes: number
    /** the most room a host with the file could make (free + evictable) */
    largestFreeBytes: number
    /** that host */
    peerId?: string
  }
  | { ok: false, code: 'MODEL_NOT_FOUND', message: string }

/** A host that has the model's file, with its room and how well the model fits there. */
export interface PlacementCandidate {
  node: NodeRecord
  room: HostRoom
  /** 0: fits in free memory; 1: fits after evicting unpinned models; 2: does not fit */
  fit: 0 | 1 | 2
  footprintBytes: number
  /** the host's placement of the model failed (it may fail again) */
  failed: boolean
}

/**
 * The hosts that could start `model`, best first: reachable hosts whose record lists it (by
 * name). Order: fits in free memory, then fits after evicting unpinned models, then the rest;
 * within a group hosts where the model's placement failed last (the failure may be the
 * host's, like a broken driver; it is still tried when no other host is left), then more
 * free memory first; equal free memory goes by the rendezvous order of (model, host).
 *
 * Every figure compared comes from record and placement content (budgets, runners, planned
 * starts), never from heartbeats, and the last tie-break is a hash: so every entry that holds
 * the same records names the same host, and two entries asking for one cold model at once
 * start it once. Entries whose documents differ (an update still on the wire) can disagree;
 * the chosen host's placement entry, once it arrives, makes the others wait for that start.
 */
export function placementCandidates (model: string, view: PlacementView, ctxSize: number = DEFAULT_CTX_SIZE, where: (node: NodeRecord) => boolean = () => true): PlacementCandidate[] {
  const seen = new Set<string>()
  const hosts: PlacementCandidate[] = []
  for (const node of view.nodes) {
    if (seen.has(node.peerId)) continue
    seen.add(node.peerId)
    if (node.peerId !== view.selfPeerId && !view.reachable.has(node.peerId)) continue
    const info = node.models.find((m) => m.name === model)
    if (info == null || !where(node)) continue
    const room = hostRoom(node, view, ctxSize)
    const need = footprint(info, ctxSize).totalBytes
    const fit = need <= room.free ? 0 : need <= room.free + room.evictable ? 1 : 2
    const failed = (view.placements.get(node.peerId)?.placements ?? []).some((p) => p.model === model && p.state === 'failed')
    hosts.push({ node, room, fit, footprintBytes: need, failed })
  }
  const tie = new Map(rendezvousOrder(model, hosts.map((h) => ({ peerId: h.node.peerId })), () => 1).map((h, i) => [h.peerId, i]))
  return hosts.sort((a, b) => a.fit - b.fit || Number(a.failed) - Number(b.failed) || b.room.free - a.room.free || tie.get(a.node.peerId)! - tie.get(b.node.peerId)!)
}

/**
 * Where to start `model`, which no host runs: the first of `placementCandidates`, if the model
 * fits there (after evictions) or `loadAnyway` is set. Fails with INSUFFICIENT_MEMORY and the
 * numbers when it fits nowhere, MODEL_NOT_FOUND when no reachable host has the file.
 */
export function planCold (model: string, view: PlacementView, opts: ColdPlanOptions = {}): ColdPlan {
  const ctxSize = opts.ctxSize ?? DEFAULT_CTX_SIZE
  const exclude = new Set(opts.exclude ?? [])
  const hosts = placementCandidates(model, view, ctxSize, (n) => !exclude.has(n.peerId))
  const best = hosts[0]
  if (best == null) return { ok: false, code: 'MODEL_NOT_FOUND', message: `no reachable host has model '${model}'` }
  if (best.fit === 2 && opts.loadAnyway !== true) return insufficient(model, hosts, ctxSize)
  const { room, footprintBytes } = best
  const evictBytes = best.fit === 0 ? 0 : Math.min(room.evictable, footprintBytes - room.free)
  const have = `${gib(room.free)} GiB free of ${gib(room.budget)} GiB`
  const reasons = [
    `footprint=${gib(footprintBytes)}GiB`,
    best.fit === 0 ? `fits: ${have}` : best.fit === 1 ? `evict ${gib(evictBytes)} GiB: ${have}` : `load-anyway: ${have}`,
    `candidates=${hosts.length}`
  ]
  return { ok: true, peerId: best.node.peerId, footprintBytes, freeBytes: room.free, evictBytes, reasons }
}

function insufficient (model: string, hosts: PlacementCandidate[], ctxSize: number): Extract<ColdPlan, { code: 'INSUFFICIENT_MEMORY' }> {
  const roomiest = [...hosts].sort((a, b) => (b.room.free + b.room.evictable) - (a.room.free + a.room.evictable))[0]!
  const info = roomiest.node.models.find((m) => m.name === model)!
  const f = footprint(info, ctxSize)
  const largest = roomiest.room.free + roomiest.room.evictable
  const evicting = roomiest.room.evictable > 0 ? ' (evicting its unpinned models)' : ''
  const message = `model '${model}' needs ${gib(f.totalBytes)} GiB (weights ${gib(f.weightsBytes)} + KV ${gib(f.kvBytes)} + overhead ${gib(f.overheadBytes)}); ` +
    `the largest free host, '${roomiest.node.name}', has ${gib(largest)} GiB of ${gib(roomiest.room.budget)} GiB${evicting} ` +
    '(set loadAnyway or x-llmesh-load-anyway: 1 to load it anyway)'
  return { ok: false, code: 'INSUFFICIENT_MEMORY', message, needBytes: f.totalBytes, largestFreeBytes: largest, peerId: roomiest.node.peerId }
}
