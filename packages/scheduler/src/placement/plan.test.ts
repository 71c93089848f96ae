import { describe, expect, it } from 'vitest'
import { modelInfo, mulberry32, nodeRecord } from '@llmesh/testkit'
import type { EffectivePin, ModelInfo, NodeRecord, Placement, PlacementsEntry, RunnerInfo } from '@llmesh/protocol'
import { DEFAULT_CTX_SIZE } from '../constants.js'
import { footprint, footprintBytes } from './footprint.js'
import { planCold, type ColdPlan, type PlacementView } from './plan.js'
import { hostRoom } from './room.js'

const GiB = 2 ** 30
const model = (name: string, sizeBytes: number): ModelInfo => modelInfo(name, { sizeBytes, kvBytesPerToken: 1024 })
const need = (m: ModelInfo): number => footprintBytes(m, DEFAULT_CTX_SIZE)

/** A host giving `budget` bytes to models, with the files `models` and the live `runners`. */
function host (peerId: string, budget: number, models: ModelInfo[], runners: Array<Partial<RunnerInfo>> = []): NodeRecord {
  return nodeRecord(peerId, { hardware: { cpus: 1, memBytes: 2 * budget, platform: 'linux', arch: 'x64', modelMemBytes: budget }, models, runners })
}

function entry (peerId: string, placements: Array<Partial<Placement> & { model: string }>): PlacementsEntry {
  return { peerId, placements: placements.map((p) => ({ state: 'ready', reason: 'request', since: 0, ...p })), updatedAt: 0, sig: '' }
}

function view (nodes: NodeRecord[], over: Partial<PlacementView> = {}): PlacementView {
  return { selfPeerId: nodes[0]!.peerId, nodes, placements: new Map(), pins: [], reachable: new Set(nodes.map((n) => n.peerId)), ...over }
}

function shuffled<T> (items: readonly T[], random: () => number): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

const okPlan = (p: ColdPlan): Extract<ColdPlan, { ok: true }> => {
  if (!p.ok) throw new Error(`expected a plan, got ${p.code}: ${p.message}`)
  return p
}

describe('hostRoom', () => {
  it('counts live runners and planned starts, frees unpinned runners only', () => {
    const a = model('a', 2 * GiB)
    const b = model('b', 3 * GiB)
    const c = model('c', 1 * GiB)
    const n = host('h', 16 * GiB, [a, b, c], [{ model: 'a' }, { model: 'b' }, { model: 'c', state: 'failed' }])
    const placements = new Map([['h', entry('h', [{ model: 'b', runnerId: 'h-r1', reason: 'config' }, { model: 'c', state: 'planned', footprintBytes: 5 * GiB }])]])
    const room = hostRoom(n, { nodes: [n], placements, pins: [] })
    expect(room).toEqual({ peerId: 'h', budget: 16 * GiB, used: need(a) + need(b) + 5 * GiB, free: 16 * GiB - need(a) - need(b) - 5 * GiB, evictable: need(a) })
    // a pin anywhere protects the only host with a copy, not one of two
    const other = host('o', 16 * GiB, [a], [{ model: 'a' }])
    const pins: EffectivePin[] = [{ model: 'a' }]
    expect(hostRoom(n, { nodes: [n], placements, pins }).evictable).toBe(0)
    expect(hostRoom(n, { nodes: [n, other], placements, pins }).evictable).toBe(need(a))
    expect(hostRoom(n, { nodes: [n, other], placements, pins: [{ model: 'a', host: 'h' }] }).evictable).toBe(0)
    expect(hostRoom(host('x', GiB, [b], [{ model: 'b' }]), { nodes: [], placements: new Map(), pins: [] }).free).toBe(0)
  })

  it('counts a split member\'s part while its coordinator plans it there, not once the plan went', () => {
    const split = { coordinator: 'c', hosts: [{ peerId: 'c', layers: 2, bytes: GiB }, { peerId: 'm', layers: 2, bytes: 3 * GiB }] }
    const n = host('m', 16 * GiB, [], [{ model: 'big', kind: 'rpc-server', slots: 0 }])
    const part = entry('m', [{ model: 'big', reason: 'split', runnerId: 'm-r0', footprintBytes: 3 * GiB, split }])
    const at = (coordinator: PlacementsEntry | undefined): number =>
      hostRoom(n, { nodes: [n], placements: new Map([['m', part], ...(coordinator != null ? [['c', coordinator] as const] : [])]), pins: [] }).used
    expect(at(entry('c', [{ model: 'big', split }]))).toBe(3 * GiB)
    expect(at(entry('c', [{ model: 'big', state: 'failed', split }]))).toBe(0)
    expect(at(entry('c', [{ model: 'big', split: { ...split, hosts: [split.hosts[0]!, { ...split.hosts[1]!, peerId: 'other' }] } }]))).toBe(0)
    expect(at(undefined)).toBe(0)
  })
})

describe('planCold', () => {
  it('names the same host whatever the order of the records and whoever asks', () => {
    const random = mulberry32(7)
    for (let round = 0; round < 30; round++) {
      const m = model('m', Math.floor((1 + random() * 4) * GiB))
      // equal hosts, some of them twins: only the deterministic tie-break tells them apart
      const nodes = Array.from({ length: 6 }, (_, i) => host(`p${round}-${i}`, (8 + 4 * Math.floor(random() * 2)) * GiB, [m]))
      const first = okPlan(planCold('m', view(nodes))).peerId
      for (let k = 0; k < 5; k++) {
        const order = shuffled(nodes, random)
        // another entry: another self, a reachable set listing the same peers in another order
        const self = order[Math.floor(random() * order.length)]!.peerId
        const reachable = new Set(shuffled(nodes.map((n) => n.peerId), random))
        expect(okPlan(planCold('m', view(order, { selfPeerId: self, reachable }))).peerId).toBe(first)
      }
    }
  })

  it('spreads cold models over equal hosts', () => {
    const models = Array.from({ length: 40 }, (_, i) => model(`m${i}`, GiB))
    const nodes = ['a', 'b', 'c', 'd'].map((id) => host(id, 8 * GiB, models))
    const chosen = new Set(models.map((m) => okPlan(planCold(m.name, view(nodes))).peerId))
    expect(chosen.size).toBe(nodes.length)
  })

  it('prefers a host where it fits, then one that fits after evicting, then (loadAnyway) the largest free', () => {
    const m = model('m', 6 * GiB)
    const old = model('old', 6 * GiB)
    const fits = host('fits', need(m), [m])
    const evicts = host('evicts', need(old) + need(m) - 1, [m, old], [{ model: 'old' }])
    const neither = host('neither', need(m) - 1, [m])
    const pinned = host('pinned', need(old) + need(m) - 2, [m, old], [{ model: 'old' }])
    const pins = [{ model: 'old', host: 'pinned' }]
    let p = okPlan(planCold('m', view([neither, pinned, evicts, fits], { pins })))
    expect(p).toMatchObject({ peerId: 'fits', evictBytes: 0, freeBytes: need(m), footprintBytes: need(m) })
    expect(p.reasons[1]).toMatch(/^fits: /)

    p = okPlan(planCold('m', view([neither, pinned, evicts], { pins })))
    const evictRoom = hostRoom(evicts, { nodes: [evicts], placements: new Map(), pins })
    expect(p).toMatchObject({ peerId: 'evicts', freeBytes: evictRoom.free, evictBytes: need(m) - evictRoom.free })
    expect(p.reasons[1]).toMatch(/^evict /)

    expect(planCold('m', view([neither, pinned], { pins })).ok).toBe(false)
    p = okPlan(planCold('m', view([neither, pinned], { pins }), { loadAnyway: true }))
    expect(p).toMatchObject({ peerId: 'neither', freeBytes: need(m) - 1, evictBytes: 0 })
    expect(p.reasons[1]).toMatch(/^load-anyway: /)
  })

  it('counts planned starts and ignores hosts that cannot be reached', () => {
    const m = model('m', 4 * GiB)
    const a = host('a', 2 * need(m), [m])
    const b = host('b', 2 * need(m), [m])
    const c = host('c', 10 * need(m), [m])
    const placements = new Map([['b', entry('b', [{ model: 'x', state: 'planned', footprintBytes: need(m) + 1 }])]])
    expect(okPlan(planCold('m', view([a, b, c], { placements, reachable: new Set(['b']) }))).peerId).toBe('a')
    // a host where the model failed comes after the others, and is still a host
    const failed = new Map([['c', entry('c', [{ model: 'm', state: 'failed' }])]])
    expect(okPlan(planCold('m', view([a, b, c], { placements: failed }))).peerId).not.toBe('c')
    expect(okPlan(planCold('m', view([c], { placements: failed }))).peerId).toBe('c')
  })

  it('fails with the numbers when it fits nowhere', () => {
    const m = model('big', 12 * GiB)
    const small = host('small', 4 * GiB, [m])
    const busy = host('busy', 8 * GiB, [m, model('old', 2 * GiB)], [{ model: 'old' }])
    const p = planCold('big', view([small, busy]))
    if (p.ok || p.code !== 'INSUFFICIENT_MEMORY') throw new Error('expected INSUFFICIENT_MEMORY')
    const f = footprint(m, DEFAULT_CTX_SIZE)
    expect(p).toMatchObject({ needBytes: f.totalBytes, largestFreeBytes: 8 * GiB, peerId: 'busy' })
    const g = (n: number): string => (n / GiB).toFixed(2)
    expect(p.message).toBe(`model 'big' needs ${g(f.totalBytes)} GiB (weights ${g(f.weightsBytes)} + KV ${g(f.kvBytes)} + overhead ${g(f.overheadBytes)}); ` +
      `the largest free host, 'busy', has ${g(8 * GiB)} GiB of ${g(8 * GiB)} GiB (evicting its unpinned models) (set loadAnyway or x-llmesh-load-anyway: 1 to load it anyway)`)
  })

  it('says when no reachable host has the file', () => {
    const nodes = [host('a', GiB, [model('m', 1)]), host('b', GiB, [model('other', 1)])]
    expect(planCold('m', view(nodes, { selfPeerId: 'b', reachable: new Set() }))).toEqual({ ok: false, code: 'MODEL_NOT_FOUND', message: "no reachable host has model 'm'" })
  })
})
