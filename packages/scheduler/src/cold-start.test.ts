import { describe, expect, it } from 'vitest'
import { modelInfo, mulberry32, nodeRecord } from '@llmesh/testkit'
import type { ModelInfo, NodeRecord, Placement, PlacementsEntry, RunnerInfo } from '@llmesh/protocol'
import type { RankInput, RankResult } from './cluster-view.js'
import { DEFAULT_CTX_SIZE } from './constants.js'
import { Dispatch, Dispatcher, type DispatchView } from './dispatch/index.js'
import { footprintBytes } from './placement/footprint.js'
import { planCold, type PlacementView } from './placement/plan.js'
import { planSplit } from './placement/split.js'
import { rank } from './rank.js'

/** Models on demand through rank() and the dispatch machine: warm, loading, cold start, no room. */

const GiB = 2 ** 30
const M = modelInfo('m', { sizeBytes: 3 * GiB, kvBytesPerToken: 4096 })
const NEED = footprintBytes(M, DEFAULT_CTX_SIZE)
const NOW = 1_000_000

function host (peerId: string, budget: number, runners: Array<Partial<RunnerInfo>> = [], models: ModelInfo[] = [M]): NodeRecord {
  return nodeRecord(peerId, {
    split: { coordinator: true, member: true },
    hardware: { cpus: 1, memBytes: 2 * budget, platform: 'linux', arch: 'x64', modelMemBytes: budget },
    models,
    runners: runners.map((r) => ({ model: 'm', ...r }))
  })
}

function entry (peerId: string, placements: Array<Partial<Placement>>): PlacementsEntry {
  return { peerId, placements: placements.map((p) => ({ model: 'm', state: 'planned', reason: 'request', since: 0, ...p })), updatedAt: 0, sig: '' }
}

interface Setup { nodes: NodeRecord[], placements?: PlacementsEntry[], self?: string, random?: () => number, request?: Partial<RankInput['request']> }

function input ({ nodes, placements = [], self, random, request }: Setup): RankInput {
  return {
    view: { nodes, metrics: new Map(), placements: new Map(placements.map((e) => [e.peerId, e])), pins: [] },
    request: { model: 'm', ...request },
    selfPeerId: self ?? 'gw',
    reachable: new Set(nodes.map((n) => n.peerId)),
    inflight: new Map(),
    random: random ?? (() => 0.5),
    now: NOW
  }
}

function ok (r: RankResult): Extract<RankResult, { ok: true }> {
  if (!r.ok) throw new Error(`expected a ranking, got ${r.code}: ${r.message}`)
  return r
}

const placementView = (s: Setup): PlacementView => ({ selfPeerId: s.self ?? 'gw', nodes: s.nodes, placements: new Map((s.placements ?? []).map((e) => [e.peerId, e])), pins: [], reachable: new Set(s.nodes.map((n) => n.peerId)) })

/** a gateway without models, and hosts with the file and room for it */
const gateway = (): NodeRecord => host('gw', 0, [], [])

describe('rank: models on demand', () => {
  it('ranks warm runners as before: loading and idle hosts wait', () => {
    const nodes = [gateway(), host('warm', 4 * NEED, [{}]), host('loading', 4 * NEED, [{ state: 'loading' }]), host('idle', 8 * NEED)]
    const r = ok(rank(input({ nodes })))
    expect(r.targets.map((t) => [t.peerId, t.cold])).toEqual([['warm', false]])
    expect(r.targets[0]!.reasons).not.toContain('cold-start')
    expect(r.skipped).toEqual([{ peerId: 'loading', reason: 'not-ready' }])
  })

  it('sends requests to the hosts already starting the model when none has it ready', () => {
    const random = mulberry32(21)
    const nodes = [gateway(), host('loading', 4 * NEED, [{ state: 'loading' }]), host('planned', 4 * NEED), host('idle', 8 * NEED)]
    const placements = [entry('planned', [{ state: 'planned' }]), entry('idle', [{ model: 'other', state: 'loading' }])]
    for (const self of ['gw', 'idle', 'planned']) {
      const r = ok(rank(input({ nodes, placements, self, random })))
      expect(r.targets.map((t) => t.peerId).sort()).toEqual(['loading', 'planned'])
      for (const t of r.targets) expect(t).toMatchObject({ cold: true })
      for (const t of r.targets) expect(t.reasons).toContain('cold: loading')
      expect(r.targets.find((t) => t.peerId === 'loading')!.runnerId).toBe('loading-r0')
      expect(r.targets.find((t) => t.peerId === 'planned')!.runnerId).toBe('')
      expect(r.allFull).toBe(true)
    }
  })

  it('starts a model no host runs on the one host planCold names, the same at every entry', () => {
    const random = mulberry32(9)
    const nodes = [gateway(), ...Array.from({ length: 5 }, (_, i) => host(`h${i}`, (2 + Math.floor(random() * 2)) * NEED))]
    const plan = planCold('m', placementView({ nodes }))
    if (!plan.ok) throw new Error(plan.message)
    for (const self of nodes.map((n) => n.peerId)) {
      const order = [...nodes].sort(() => random() - 0.5)
      const r = ok(rank(input({ nodes: order, self, random })))
      expect(r.targets).toHaveLength(1)
      const t = r.targets[0]!
      expect(t).toMatchObject({ peerId: plan.peerId, runnerId: '', cold: true, coldStart: { footprintBytes: NEED, evictBytes: 0 } })
      const at = t.reasons.indexOf('cold-start')
      expect(t.reasons.slice(at, at + 1 + plan.reasons.length)).toEqual(['cold-start', ...plan.reasons])
    }
  })

  it('plans elsewhere once the cold target was tried, and still finds no model nobody has', () => {
    const nodes = [gateway(), host('a', 4 * NEED), host('b', 2 * NEED)]
    expect(ok(rank(input({ nodes }))).targets[0]!.peerId).toBe('a')
    expect(ok(rank(input({ nodes, request: { exclude: ['a'] } }))).targets[0]!.peerId).toBe('b')
    const r = rank(input({ nodes, request: { model: 'nope' } }))
    expect(r).toMatchObject({ ok: false, code: 'MODEL_NOT_FOUND' })
  })
})

describe('dispatch: cold start and memory', () => {
  const view = (nodes: NodeRecord[]): DispatchView => ({ now: NOW, selfPeerId: 'gw', nodes, peers: [], reachable: new Set(nodes.map((n) => n.peerId)), placements: new Map(), pins: [] })
  const small = (): NodeRecord[] => [gateway(), host('small', NEED - 1), host('smaller', NEED - GiB)]

  it('fails with INSUFFICIENT_MEMORY and the numbers when the model fits nowhere', () => {
    const nodes = small()
    const plan = planCold('m', placementView({ nodes }))
    if (plan.ok || plan.code !== 'INSUFFICIENT_MEMORY') throw new Error('expected INSUFFICIENT_MEMORY')
    const action = new Dispatch(new Dispatcher({ random: mulberry32(1) })).start({ model: 'm' }, view(nodes))
    expect(action).toEqual({ kind: 'fail', code: 'INSUFFICIENT_MEMORY', message: plan.message })
    expect(plan.message).toContain(`${(plan.needBytes / GiB).toFixed(2)} GiB`)
    expect(plan.message).toContain(`has ${((NEED - 1) / GiB).toFixed(2)} GiB`)
  })

  it('loads it anyway on the host with the most room when asked', () => {
    const nodes = small()
    const action = new Dispatch(new Dispatcher({ random: mulberry32(1) })).start({ model: 'm', loadAnyway: true }, view(nodes))
    if (action.kind !== 'try') throw new Error(`expected a try, got ${action.kind}`)
    expect(action.target).toMatchObject({ peerId: 'small', cold: true, runnerId: '' })
    expect(action.target.reasons.some((r) => r.startsWith('load-anyway'))).toBe(true)
    expect(action.mayQueue).toBe(true)
  })

  it('plans a cold start with the request context', () => {
    const nodes = [gateway(), host('a', NEED)]
    const d = (): Dispatch => new Dispatch(new Dispatcher({ random: mulberry32(2) }))
    expect(d().start({ model: 'm' }, view(nodes)).kind).toBe('try')
    expect(d().start({ model: 'm', ctxSize: 2 * DEFAULT_CTX_SIZE }, view(nodes))).toMatchObject({ kind: 'fail', code: 'INSUFFICIENT_MEMORY' })
  })
})

describe('rank: a model too big for one host', () => {
  /** 8 blocks of 1 GiB and 1 GiB outside them: 9 GiB of weights */
  const B = modelInfo('m', { sizeBytes: 9 * GiB, layers: 8, bytesPerLayer: GiB, otherBytes: GiB, kvBytesPerToken: 8 * 1024 })
  const nodes = (): NodeRecord[] => [gateway(), host('a', 6 * GiB, [], [B]), host('b', 5 * GiB, [], []), host('c', GiB / 2, [], [])]

  it('targets the coordinator of a split, the same at every entry, with the plan in the route', () => {
    const ns = nodes()
    const plan = planSplit('m', placementView({ nodes: ns }))
    if (!plan.ok) throw new Error(plan.message)
    expect(plan.members.map((m) => m.peerId)).toEqual(['a', 'b'])
    for (const self of ['gw', 'b', 'c']) {
      const r = ok(rank(input({ nodes: ns, self })))
      expect(r.targets).toHaveLength(1)
      expect(r.targets[0]).toMatchObject({ peerId: 'a', cold: true, coldStart: { footprintBytes: plan.footprintBytes, evictBytes: 0, split: plan.members.map((m) => ({ peerId: m.peerId, layers: m.layers })) } })
      expect(r.targets[0]!.reasons).toEqual(expect.arrayContaining(['cold-start', 'split', ...plan.reasons]))
    }
  })

  it('waits for the coordinator while it loads; an rpc-server or a member placement never takes the request', () => {
    const ns = nodes()
    ns[2] = host('b', 5 * GiB, [{ id: 'b-rpc', kind: 'rpc-server', slots: 0 }], [])
    const placements = [entry('a', [{ state: 'loading', split: { coordinator: 'a', hosts: [{ peerId: 'a', layers: 4, bytes: 0 }, { peerId: 'b', layers: 4, bytes: 0 }] } }]), entry('b', [{ state: 'ready', reason: 'split', runnerId: 'b-rpc' }])]
    const r = ok(rank(input({ nodes: ns, placements })))
    expect(r.targets.map((t) => [t.peerId, t.cold])).toEqual([['a', true]])
    expect(r.targets[0]!.reasons).toContain('cold: loading')
  })

  it('answers INSUFFICIENT_MEMORY with the blocks each host could hold when the hosts together are too small', () => {
    const ns = [gateway(), host('a', 4 * GiB, [], [B]), host('b', 2 * GiB, [], [])]
    const r = rank(input({ nodes: ns }))
    if (r.ok) throw new Error('expected a failure')
    expect(r.code).toBe('INSUFFICIENT_MEMORY')
    expect(r.message).toMatch(/hold \d+ of 8 blocks: 'a' [\d.]+ GiB free, \d+ blocks; 'b' [\d.]+ GiB free, \d+ blocks/)
  })
})
