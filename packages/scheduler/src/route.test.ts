import { describe, expect, it } from 'vitest'
import type { NodeRecord, RunnerInfo } from '@llmesh/protocol'
import { route } from './route.js'

function node (peerId: string, runners: Array<Partial<RunnerInfo>>): NodeRecord {
  return {
    peerId, name: peerId, version: 't', protocol: 1, addrs: [], api: '',
    hardware: { cpus: 1, memBytes: 1, platform: 'linux', arch: 'x64' },
    models: [],
    runners: runners.map((r, i) => ({ id: `${peerId}-r${i}`, kind: 'llama-server', model: 'tiny', state: 'ready', slots: 2, ...r })),
    startedAt: 0, updatedAt: 0
  }
}

const base = { model: 'tiny', selfPeerId: 'self', random: () => 0.5 }

describe('route', () => {
  it('sends the request to the only host that has the model', () => {
    const r = route({ ...base, nodes: [node('self', []), node('b', [{}])], reachable: new Set(['b']), inflight: new Map() })
    expect(r).toMatchObject({ ok: true, target: { peerId: 'b', runnerId: 'b-r0' } })
  })

  it('prefers the local host when loads are equal, and the less loaded host otherwise', () => {
    const nodes = [node('self', [{}]), node('b', [{}])]
    const reachable = new Set(['b'])
    expect(route({ ...base, nodes, reachable, inflight: new Map() })).toMatchObject({ ok: true, target: { peerId: 'self' } })
    expect(route({ ...base, nodes, reachable, inflight: new Map([['self', 2]]) })).toMatchObject({ ok: true, target: { peerId: 'b' } })
  })

  it('skips unreachable hosts and runners that are not ready', () => {
    const nodes = [node('self', []), node('b', [{ state: 'loading' }]), node('c', [{}])]
    expect(route({ ...base, nodes, reachable: new Set(['b']), inflight: new Map() }))
      .toMatchObject({ ok: false, code: 'NO_CAPACITY' })
  })

  it('answers MODEL_NOT_FOUND with what the mesh has', () => {
    const r = route({ ...base, model: 'nope', nodes: [node('self', [{}])], reachable: new Set(), inflight: new Map() })
    expect(r).toEqual({ ok: false, code: 'MODEL_NOT_FOUND', message: "no host in the mesh serves model 'nope'", available: ['tiny'] })
  })

  it('breaks ties between remote hosts by the spread order: routers without the model start at different hosts', () => {
    const nodes = [node('g1', []), node('g2', []), node('b', [{}]), node('c', [{}])]
    const reachable = new Set(['b', 'c'])
    const picks = new Set<string>()
    for (const self of ['g1', 'g2']) {
      const r = route({ ...base, selfPeerId: self, random: () => 0, nodes, reachable, inflight: new Map() })
      if (r.ok) picks.add(r.target.peerId)
    }
    expect(picks).toEqual(new Set(['b', 'c']))
  })
})

describe('route with the new inputs', () => {
  it('passes metrics, strategy and exclusions through to rank() and returns every target', () => {
    const nodes = [node('self', [{}]), node('b', [{}]), node('c', [{}])]
    const metrics = new Map([
      ['b', { heartbeatAt: 0, slotsTotal: 2, slotsBusy: 0, tokensPerSecEwma: 100, latencyMsEwma: 50 }],
      ['self', { heartbeatAt: 0, slotsTotal: 2, slotsBusy: 0, tokensPerSecEwma: 20, latencyMsEwma: 50 }],
      ['c', { heartbeatAt: 0, slotsTotal: 2, slotsBusy: 0, tokensPerSecEwma: 20, latencyMsEwma: 50 }]
    ])
    const r = route({ ...base, nodes, reachable: new Set(['b', 'c']), inflight: new Map(), metrics, now: 0 })
    expect(r).toMatchObject({ ok: true, target: { peerId: 'b' } })
    if (r.ok) expect(r.targets.map((t) => t.peerId)).toEqual(['b', 'self', 'c'])
    expect(route({ ...base, nodes, reachable: new Set(['b', 'c']), inflight: new Map(), metrics, now: 0, exclude: ['b'] }))
      .toMatchObject({ ok: true, target: { peerId: 'self' } })
    expect(route({ ...base, nodes, reachable: new Set(['b', 'c']), inflight: new Map(), strategy: 'round-robin', roundRobin: new Map([['tiny', 'b']]) }))
      .toMatchObject({ ok: true, target: { peerId: 'c', reasons: expect.arrayContaining(['strategy=round-robin']) } })
  })
})
