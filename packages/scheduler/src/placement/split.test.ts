import { describe, expect, it } from 'vitest'
import { modelInfo, mulberry32, nodeRecord } from '@llmesh/testkit'
import type { ModelInfo, NodeRecord } from '@llmesh/protocol'
import { DEFAULT_CTX_SIZE, RUNNER_OVERHEAD_BYTES } from '../constants.js'
import { footprintBytes } from './footprint.js'
import type { PlacementView } from './plan.js'
import { planSplit, type SplitPlan } from './split.js'

const GiB = 2 ** 30
const LAYERS = 40
/** 40 blocks of 1 GiB, 2 GiB outside them, KV 40 KiB a token (1 KiB a block) */
const big = (over: Partial<ModelInfo> = {}): ModelInfo => modelInfo('big', { sizeBytes: 42 * GiB, layers: LAYERS, bytesPerLayer: GiB, otherBytes: 2 * GiB, kvBytesPerToken: LAYERS * 1024, ...over })
const blockBytes = GiB + 1024 * DEFAULT_CTX_SIZE
const restBytes = 2 * GiB + RUNNER_OVERHEAD_BYTES

function host (peerId: string, budget: number, models: ModelInfo[] = []): NodeRecord {
  return nodeRecord(peerId, { name: `n-${peerId}`, split: { coordinator: true, member: true }, hardware: { cpus: 1, memBytes: 2 * budget, platform: 'linux', arch: 'x64', modelMemBytes: budget }, models, runners: [] })
}
function view (nodes: NodeRecord[], over: Partial<PlacementView> = {}): PlacementView {
  return { selfPeerId: nodes[0]!.peerId, nodes, placements: new Map(), pins: [], reachable: new Set(nodes.map((n) => n.peerId)), ...over }
}
const ok = (p: SplitPlan): Extract<SplitPlan, { ok: true }> => {
  if (!p.ok) throw new Error(`expected a plan, got ${p.code}: ${p.message}`)
  return p
}

describe('planSplit', () => {
  it('plans a model that fits one host with the file on that host alone', () => {
    const p = ok(planSplit('big', view([host('a', 64 * GiB, [big()]), host('b', 128 * GiB)])))
    expect(p.coordinator).toBe('a')
    expect(p.members).toEqual([{ peerId: 'a', layers: LAYERS, bytes: footprintBytes(big(), DEFAULT_CTX_SIZE), freeBytes: 64 * GiB }])
  })

  it('splits by blocks over the fewest hosts, largest first, in proportion to what each holds; the coordinator has the file', () => {
    const nodes = [host('a', 24 * GiB, [big()]), host('b', 16 * GiB), host('c', 12 * GiB), host('d', 4 * GiB)]
    const p = ok(planSplit('big', view(nodes)))
    expect(p.coordinator).toBe('a')
    // a holds 21 blocks after the rest, b 15: 36 < 40, so c too; d is not needed
    expect(p.members.map((m) => m.peerId)).toEqual(['a', 'b', 'c'])
    const cap = { a: Math.floor((24 * GiB - restBytes) / blockBytes), b: Math.floor((16 * GiB - RUNNER_OVERHEAD_BYTES) / blockBytes), c: Math.floor((12 * GiB - RUNNER_OVERHEAD_BYTES) / blockBytes) }
    expect(p.members.reduce((n, m) => n + m.layers, 0)).toBe(LAYERS)
    for (const m of p.members) {
      expect(m.layers).toBeLessThanOrEqual(cap[m.peerId as keyof typeof cap])
      expect(m.bytes).toBeLessThanOrEqual(m.freeBytes)
    }
    expect(p.reasons[1]).toMatch(/^layers n-a=\d+ n-b=\d+ n-c=\d+$/)
  })

  it('is the same plan whatever the order of the records and whichever entry plans it', () => {
    const nodes = [host('a', 24 * GiB, [big()]), host('b', 16 * GiB), host('c', 16 * GiB), host('d', 16 * GiB, [big()])]
    const random = mulberry32(20)
    const first = ok(planSplit('big', view(nodes)))
    for (let i = 0; i < 20; i++) {
      const shuffled = [...nodes].sort(() => random() - 0.5)
      expect(ok(planSplit('big', { ...view(shuffled), selfPeerId: shuffled[0]!.peerId }))).toEqual(first)
    }
  })

  it('counts every expert of a MoE block on the host that holds the block', () => {
    // the same total size, but a block of 4 GiB (all experts): fewer blocks fit per host
    const moe = big({ layers: 10, bytesPerLayer: 4 * GiB, kvBytesPerToken: 10 * 1024, experts: 8, expertsUsed: 2 })
    const p = ok(planSplit('big', view([host('a', 24 * GiB, [moe]), host('b', 16 * GiB), host('c', 12 * GiB)])))
    for (const m of p.members) expect(m.bytes).toBeLessThanOrEqual(m.freeBytes)
    expect(p.members.reduce((n, m) => n + m.layers, 0)).toBe(10)
  })

  it('says why a model fits nowhere, with every host\'s figures, and loads it anyway when told to', () => {
    const nodes = [host('a', 12 * GiB, [big()]), host('b', 8 * GiB), host('c', 4 * GiB)]
    const no = planSplit('big', view(nodes))
    expect(no.ok).toBe(false)
    if (no.ok) return
    expect(no.code).toBe('INSUFFICIENT_MEMORY')
    expect(no.message).toMatch(/needs \d+\.\d\d GiB .*hold \d+ of 40 blocks: 'n-a' 12\.00 GiB free, \d+ blocks; 'n-b' 8\.00 GiB free, \d+ blocks; 'n-c' 4\.00 GiB free, \d+ blocks/)
    expect(no.hosts.map((h) => h.peerId)).toEqual(['a', 'b', 'c'])
    const anyway = ok(planSplit('big', view(nodes), { loadAnyway: true }))
    expect(anyway.members.reduce((n, m) => n + m.layers, 0)).toBe(LAYERS)
    expect(anyway.reasons).toContain('load anyway: the hosts hold fewer blocks than the model has')
  })

  it('leaves out unreachable and excluded hosts, and needs a reachable host with the file', () => {
    const nodes = [host('a', 24 * GiB, [big()]), host('b', 16 * GiB), host('c', 16 * GiB), host('d', 64 * GiB, [big()])]
    const p = ok(planSplit('big', view(nodes, { reachable: new Set(['b', 'c', 'd']) }), { exclude: ['d'] }))
    expect(p.coordinator).toBe('a')
    expect(p.members.map((m) => m.peerId)).not.toContain('d')
    const none = planSplit('big', view([host('x', 8 * GiB), host('a', 64 * GiB, [big()])], { reachable: new Set() }))
    expect(none).toMatchObject({ ok: false, code: 'MODEL_NOT_FOUND' })
  })

  it('does not split a model whose header gives no block sizes', () => {
    const flat = big({ bytesPerLayer: undefined })
    const p = planSplit('big', view([host('a', 24 * GiB, [flat]), host('b', 64 * GiB)]))
    expect(p).toMatchObject({ ok: false, code: 'INSUFFICIENT_MEMORY', message: expect.stringMatching(/cannot be split/) })
  })

  it('gives parts only to hosts that can take them: a coordinator with llama-server, members with rpc-server', () => {
    const roles = (n: NodeRecord, coordinator: boolean, member: boolean): NodeRecord => ({ ...n, split: { coordinator, member } })
    const nodes = [roles(host('a', 40 * GiB, [big()]), false, true), host('b', 24 * GiB, [big()]), roles(host('c', 64 * GiB), true, false), host('d', 20 * GiB)]
    const p = ok(planSplit('big', view(nodes)))
    expect(p.coordinator).toBe('b')
    expect(p.members.map((m) => m.peerId)).toEqual(['b', 'a'])
    const none = planSplit('big', view([roles(host('a', 24 * GiB, [big()]), false, true), host('b', 64 * GiB)]))
    expect(none).toMatchObject({ ok: false, splittable: false, message: expect.stringMatching(/no host with the file can coordinate/) })
    // alone, a host has no one to split with: the whole-model figures say more
    expect(planSplit('big', view([host('a', 24 * GiB, [big()])]))).toMatchObject({ ok: false, code: 'INSUFFICIENT_MEMORY', splittable: false })
  })
})
