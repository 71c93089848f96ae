import { describe, expect, it } from 'vitest'
import { modelInfo, mulberry32, nodeRecord, peerMetrics } from '@llmesh/testkit'
import type { EffectivePin, ModelInfo, NodeRecord, Placement, PlacementsEntry, RunnerInfo } from '@llmesh/protocol'
import type { ReportingPeer } from '../claims.js'
import { DEFAULT_CTX_SIZE, SCALE_DOWN_AFTER_MS, SCALE_UP_AFTER_MS } from '../constants.js'
import { footprintBytes } from './footprint.js'
import { decideReplicas, idleUnload, scaleDown, type IdleState, type ReplicaInput, type ReplicaState } from './replicas.js'

const GiB = 2 ** 30
const M = modelInfo('m', { sizeBytes: 2 * GiB, kvBytesPerToken: 1024 })
const NEED = footprintBytes(M, DEFAULT_CTX_SIZE)

function host (peerId: string, budget: number, runners: Array<Partial<RunnerInfo>> = [], models: ModelInfo[] = [M]): NodeRecord {
  return nodeRecord(peerId, { hardware: { cpus: 1, memBytes: 2 * budget, platform: 'linux', arch: 'x64', modelMemBytes: budget }, models, runners: runners.map((r) => ({ model: 'm', ...r })) })
}

function entry (peerId: string, placements: Array<Partial<Placement>>): PlacementsEntry {
  return { peerId, placements: placements.map((p) => ({ model: 'm', state: 'ready', reason: 'request', since: 0, ...p })), updatedAt: 0, sig: '' }
}

const reporting = (peerId: string, figures: Array<{ model?: string, slots: number, busy: number, queue: number }>): ReportingPeer =>
  ({ peerId, state: 'alive', metrics: { ...peerMetrics(), models: figures.map((f) => ({ model: 'm', ...f })) } })

interface Setup { nodes: NodeRecord[], placements?: PlacementsEntry[], peers: ReportingPeer[], pins?: EffectivePin[], self?: string }

function input ({ nodes, placements = [], peers, pins = [], self }: Setup, now: number, config: ReplicaInput['config'] = {}): ReplicaInput {
  return {
    view: { selfPeerId: self ?? nodes[0]!.peerId, nodes, placements: new Map(placements.map((e) => [e.peerId, e])), pins, reachable: new Set(nodes.map((n) => n.peerId)) },
    peers,
    config,
    now
  }
}

describe('decideReplicas', () => {
  const random = mulberry32(11)
  const t0 = Math.floor(random() * 1e9)

  /** `a` serves m with 2 slots and a queue; b and c have the file and room; d runs m already. */
  const setup = (queue: number): Setup => ({
    nodes: [host('a', 4 * NEED, [{}]), host('b', 4 * NEED), host('c', 4 * NEED), host('d', 4 * NEED, [{}])],
    placements: [entry('a', [{ runnerId: 'a-r0' }]), entry('d', [{ runnerId: 'd-r0' }])],
    peers: [reporting('a', [{ slots: 2, busy: 2, queue }]), reporting('d', [{ slots: 2, busy: 2, queue: 0 }])]
  })

  it('starts one more host after scaleUpAfterMs of queues beyond the slots, never one that runs it', () => {
    let state: ReplicaState = { pressureSince: new Map() }
    const step = (queue: number, now: number): string[] => {
      const r = decideReplicas(input(setup(queue), now), state)
      state = r.state
      return r.start.map((s) => `${s.model}@${s.peerId}`)
    }
    expect(step(5, t0)).toEqual([])
    expect(step(5, t0 + SCALE_UP_AFTER_MS - 1)).toEqual([])
    // the queue fell back to the slots: the pressure has to last again from the start
    expect(step(4, t0 + SCALE_UP_AFTER_MS)).toEqual([])
    const t1 = t0 + SCALE_UP_AFTER_MS + 1
    expect(step(5, t1)).toEqual([])
    const started = step(5, t1 + SCALE_UP_AFTER_MS)
    expect(started).toHaveLength(1)
    expect(['m@b', 'm@c']).toContain(started[0])
    // every entry names the same host
    const again = decideReplicas(input({ ...setup(5), self: 'c' }, t1 + SCALE_UP_AFTER_MS), { pressureSince: new Map([['m', t1]]) })
    expect(again.start.map((s) => `${s.model}@${s.peerId}`)).toEqual(started)
    // and the clock starts again after a decision
    expect(step(5, t1 + SCALE_UP_AFTER_MS + 1)).toEqual([])
  })

  it('waits while a start of the model is under way, and never evicts for a replica', () => {
    const long = new Map([['m', t0 - SCALE_UP_AFTER_MS]])
    const s = setup(5)
    const planned = { ...s, placements: [...s.placements!, entry('b', [{ state: 'planned' }])] }
    expect(decideReplicas(input(planned, t0), { pressureSince: long }).start).toEqual([])
    const full = { ...s, nodes: [s.nodes[0]!, host('b', NEED - 1), host('c', NEED + GiB, [{ model: 'x' }], [M, modelInfo('x', { sizeBytes: GiB })]), s.nodes[3]!] }
    expect(decideReplicas(input(full, t0), { pressureSince: long }).start).toEqual([])
  })
})

describe('scaleDown and idleUnload', () => {
  const random = mulberry32(5)
  const t0 = Math.floor(random() * 1e9)

  /** the own host `r` runs m as a replica; `o` has the model ready (placed for a request) */
  const setup = (over: Partial<Setup> & { busy?: number, reason?: Placement['reason'], other?: Partial<Placement> } = {}): Setup => ({
    nodes: [host('r', 4 * NEED, [{}]), host('o', 4 * NEED, [{}])],
    placements: [entry('r', [{ runnerId: 'r-r0', reason: over.reason ?? 'replica' }]), entry('o', [{ runnerId: 'o-r0', ...over.other }])],
    peers: [reporting('r', [{ slots: 2, busy: over.busy ?? 0, queue: 0 }])],
    ...over
  })

  const drive = (fn: typeof scaleDown, steps: Array<[Setup, number]>, config: ReplicaInput['config']): string[][] => {
    let state: IdleState = { idleSince: new Map() }
    return steps.map(([s, now]) => {
      const r = fn(input(s, now, config), state)
      state = r.state
      return r.stop
    })
  }

  it('stops an idle replica after scaleDownAfterMs while another host has the model ready', () => {
    const cfg = { scaleDownAfterMs: SCALE_DOWN_AFTER_MS }
    expect(drive(scaleDown, [[setup(), t0], [setup(), t0 + SCALE_DOWN_AFTER_MS - 1], [setup(), t0 + SCALE_DOWN_AFTER_MS]], cfg)).toEqual([[], [], ['r-r0']])
    // busy in between: idle again from then
    expect(drive(scaleDown, [[setup(), t0], [setup({ busy: 1 }), t0 + 1], [setup(), t0 + 2], [setup(), t0 + SCALE_DOWN_AFTER_MS + 1]], cfg)).toEqual([[], [], [], []])
    const long: Array<(s: Setup) => [Setup, number]> = [(s) => [s, t0], (s) => [s, t0 + SCALE_DOWN_AFTER_MS]]
    const stops = (s: Setup): string[] => drive(scaleDown, long.map((f) => f(s)), cfg)[1]!
    expect(stops(setup({ reason: 'request' }))).toEqual([])
    expect(stops(setup({ other: { state: 'loading' } }))).toEqual([])
    // two idle replicas: exactly one of them stays
    const both = (self: string): Setup => ({ ...setup({ other: { reason: 'replica' } }), self, peers: [reporting(self, [{ slots: 2, busy: 0, queue: 0 }])] })
    expect([...stops(both('r')), ...stops(both('o'))]).toHaveLength(1)
  })

  it('unloads own idle models after idleUnloadMs, never pinned or config ones, and not at all when off', () => {
    const ms = 1 + Math.floor(random() * 1e6)
    const s = setup()
    expect(drive(idleUnload, [[s, t0], [s, t0 + ms - 1], [s, t0 + ms]], { idleUnloadMs: ms })).toEqual([[], [], ['r-r0']])
    expect(drive(idleUnload, [[s, t0], [s, t0 + ms]], { idleUnloadMs: 0 })).toEqual([[], []])
    expect(drive(idleUnload, [[setup({ reason: 'config' }), t0], [setup({ reason: 'config' }), t0 + ms]], { idleUnloadMs: ms })[1]).toEqual([])
    const pinned = { ...s, pins: [{ model: 'm', host: 'r' }] }
    expect(drive(idleUnload, [[pinned, t0], [pinned, t0 + ms]], { idleUnloadMs: ms })[1]).toEqual([])
  })
})
