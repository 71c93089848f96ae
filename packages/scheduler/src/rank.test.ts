import { describe, expect, it } from 'vitest'
import { mulberry32, nodeRecord } from '@llmesh/testkit'
import type { NodeRecord, RunnerInfo } from '@llmesh/protocol'
import type { RankInput, RankResult, TargetMetrics } from './cluster-view.js'
import { rank } from './rank.js'

/** A host with the given runners of 'tiny' (ready, 2 slots unless said otherwise). */
const node = (peerId: string, runners: Array<Partial<RunnerInfo>> = [{}]): NodeRecord => nodeRecord(peerId, { runners })

const NOW = 100_000
const fresh = (m: TargetMetrics): TargetMetrics => ({ heartbeatAt: NOW - 100, slotsTotal: 2, slotsBusy: 0, queueDepth: 0, ...m })

function input (over: Partial<Omit<RankInput, 'request'>> & { request?: Partial<RankInput['request']>, nodes?: NodeRecord[], metrics?: Record<string, TargetMetrics> } = {}): RankInput {
  const nodes = over.nodes ?? [node('a'), node('b'), node('c')]
  return {
    view: { nodes, metrics: new Map(Object.entries(over.metrics ?? {})) },
    request: { model: 'tiny', ...over.request },
    selfPeerId: over.selfPeerId ?? 'a',
    reachable: over.reachable ?? new Set(nodes.map((n) => n.peerId)),
    inflight: over.inflight ?? new Map(),
    random: over.random ?? (() => 0.5),
    now: over.now ?? NOW,
    ...(over.roundRobin != null ? { roundRobin: over.roundRobin } : {}),
    ...(over.circuits != null ? { circuits: over.circuits } : {}),
    ...(over.defaultStrategy != null ? { defaultStrategy: over.defaultStrategy } : {})
  }
}

function ok (r: RankResult): Extract<RankResult, { ok: true }> {
  if (!r.ok) throw new Error(`expected a ranking, got ${r.code}: ${r.message}`)
  return r
}
const order = (r: RankResult): string[] => ok(r).targets.map((t) => t.peerId)

const seeded = mulberry32

describe('rank: performance (default)', () => {
  it('ranks every candidate by expected completion time, with reasons', () => {
    const r = ok(rank(input({
      selfPeerId: 'a',
      metrics: {
        a: fresh({ latencyMsEwma: 300, tokensPerSecEwma: 20 }),
        b: fresh({ latencyMsEwma: 200, tokensPerSecEwma: 50 }),
        c: fresh({ latencyMsEwma: 200, tokensPerSecEwma: 30 })
      }
    })))
    expect(r.strategy).toBe('performance')
    expect(r.targets.map((t) => t.peerId)).toEqual(['b', 'c', 'a'])
    expect(r.allFull).toBe(false)
    const best = r.targets[0]!
    expect(best).toMatchObject({ peerId: 'b', runnerId: 'b-r0', local: false, cold: false })
    expect(best.score).toBe(200 + 256 / 50 * 1000 + 2)
    expect(best.reasons).toEqual(['strategy=performance', 'rank=1/3', 'load=0/2', 'claims=0+0', 'reported=0+0q', 'remote', 'cost=5322ms', 'ttft=200ms', 'tps=50'])
  })

  it('puts hosts with a free slot before full ones, however fast', () => {
    const metrics = { a: fresh({ tokensPerSecEwma: 100, slotsBusy: 2 }), b: fresh({ tokensPerSecEwma: 10 }), c: fresh({ tokensPerSecEwma: 10, slotsBusy: 1 }) }
    expect(order(rank(input({ metrics })))).toEqual(['b', 'c', 'a'])
  })

  it('says when every host is full, and then orders by expected wait', () => {
    const r = ok(rank(input({
      metrics: { a: fresh({ slotsBusy: 2, queueDepth: 4 }), b: fresh({ slotsBusy: 2, queueDepth: 1 }), c: fresh({ slotsBusy: 2, queueDepth: 2 }) }
    })))
    expect(r.allFull).toBe(true)
    expect(r.targets.map((t) => t.peerId)).toEqual(['b', 'c', 'a'])
    expect(r.targets[0]!.reasons).toContain('load=3/2')
    expect(r.targets[0]!.reasons.some((x) => x.startsWith('wait='))).toBe(true)
  })

  it('prefers the local host when equal; gateways without the model start at different remote hosts', () => {
    expect(order(rank(input({ selfPeerId: 'b' })))[0]).toBe('b')
    // three routers with no runner of the model, three hosts: each router starts at its own host
    const nodes = [node('g1', []), node('g2', []), node('g3', []), node('b'), node('c'), node('d')]
    const firsts = ['g1', 'g2', 'g3'].map((self) => order(rank(input({ nodes, selfPeerId: self, random: seeded(1) })))[0]!)
    expect(new Set(firsts)).toEqual(new Set(['b', 'c', 'd']))
    // the same router decides the same way whatever the random source says
    expect(order(rank(input({ nodes, selfPeerId: 'g2', random: () => 0 })))).toEqual(order(rank(input({ nodes, selfPeerId: 'g2', random: () => 0.99 }))))
  })

  it('counts costs within 10% as equal, so gateways spread over near-equal hosts; a clearly faster host wins for all', () => {
    const nodes = [node('g1', []), node('g2', []), node('b'), node('c')]
    const gateways = ['g1', 'g2']
    const firsts = (metrics: Record<string, TargetMetrics>): string[] => gateways.map((self) => order(rank(input({ nodes, selfPeerId: self, metrics })))[0]!)
    const near = { b: fresh({ latencyMsEwma: 100, tokensPerSecEwma: 100 }), c: fresh({ latencyMsEwma: 100, tokensPerSecEwma: 97 }) }
    expect(new Set(firsts(near))).toEqual(new Set(['b', 'c']))
    const far = { b: fresh({ latencyMsEwma: 100, tokensPerSecEwma: 100 }), c: fresh({ latencyMsEwma: 100, tokensPerSecEwma: 60 }) }
    expect(firsts(far)).toEqual(['b', 'b'])
    // with the band off, the 3% faster host wins everywhere
    expect(gateways.map((self) => order(rank(input({ nodes, selfPeerId: self, metrics: near }), { performanceTieBand: 0 }))[0])).toEqual(['b', 'b'])
  })

  it('widens the band to the hosts\' own variation, up to 50%: a host twice as fast still wins for all', () => {
    const nodes = [node('g1', []), node('g2', []), node('b'), node('c')]
    const firsts = (metrics: Record<string, TargetMetrics>): string[] => ['g1', 'g2'].map((self) => order(rank(input({ nodes, selfPeerId: self, metrics })))[0]!)
    // 30% apart, single requests varying by 40%: equal
    const noisy = { b: fresh({ latencyMsEwma: 100, tokensPerSecEwma: 100, tokensPerSecDev: 40 }), c: fresh({ latencyMsEwma: 100, tokensPerSecEwma: 77, tokensPerSecDev: 30 }) }
    expect(new Set(firsts(noisy))).toEqual(new Set(['b', 'c']))
    const r = ok(rank(input({ nodes, selfPeerId: 'g1', metrics: noisy })))
    expect(r.targets[0]!.reasons.some((x) => /^tie-band=\d+%$/.test(x))).toBe(true)
    // the same 30% with steady measurements: the faster host for both
    const steady = { b: fresh({ latencyMsEwma: 100, tokensPerSecEwma: 100, tokensPerSecDev: 2 }), c: fresh({ latencyMsEwma: 100, tokensPerSecEwma: 77, tokensPerSecDev: 2 }) }
    expect(firsts(steady)).toEqual(['b', 'b'])
    // twice as fast, however noisy: the faster host for both
    const twice = { b: fresh({ latencyMsEwma: 100, latencyMsDev: 500, tokensPerSecEwma: 100, tokensPerSecDev: 80 }), c: fresh({ latencyMsEwma: 100, latencyMsDev: 500, tokensPerSecEwma: 48, tokensPerSecDev: 40 }) }
    expect(firsts(twice)).toEqual(['b', 'b'])
  })

  it('within a band, the less loaded host first: a router\'s second request goes elsewhere', () => {
    const metrics = { b: fresh({ latencyMsEwma: 100, tokensPerSecEwma: 100, tokensPerSecDev: 40 }), c: fresh({ latencyMsEwma: 100, tokensPerSecEwma: 80, tokensPerSecDev: 30 }) }
    const nodes = [node('g1', []), node('b'), node('c')]
    const first = order(rank(input({ nodes, selfPeerId: 'g1', metrics })))[0]!
    const second = order(rank(input({ nodes, selfPeerId: 'g1', metrics, inflight: new Map([[first, 1]]) })))[0]!
    expect(second).not.toBe(first)
  })

  it('counts other routers\' claims: a host others have filled is avoided', () => {
    const metrics = { a: { claims: 2 }, b: { claims: 1 } }
    const r = ok(rank(input({ metrics, inflight: new Map([['c', 1]]) })))
    // a (local) has 2 of 2 slots claimed by other routers: last; b (1 claim of others) and
    // c (1 own) are equally loaded: chance orders them
    expect(new Set(r.targets.slice(0, 2).map((t) => t.peerId))).toEqual(new Set(['b', 'c']))
    expect(r.targets[2]!.peerId).toBe('a')
    expect(r.targets[2]!.reasons).toContain('claims=0+2')
  })

  it('lets priority decide between a fast host with a long queue and a slow one without', () => {
    const metrics = {
      a: fresh({ latencyMsEwma: 100, tokensPerSecEwma: 100, slotsBusy: 2, queueDepth: 20 }),
      b: fresh({ latencyMsEwma: 100, tokensPerSecEwma: 20, slotsBusy: 2, queueDepth: 0 })
    }
    const nodes = [node('a'), node('b')]
    expect(order(rank(input({ nodes, selfPeerId: 'x', metrics, request: { priority: 10 } })))[0]).toBe('a')
    expect(order(rank(input({ nodes, selfPeerId: 'x', metrics, request: { priority: 0 } })))[0]).toBe('b')
  })
})

describe('rank: other strategies', () => {
  it('least-loaded: lowest (claims or reported) / slots, local first on ties', () => {
    const nodes = [node('a', [{ slots: 4 }]), node('b'), node('c')]
    const r = rank(input({ nodes, request: { strategy: 'least-loaded' }, inflight: new Map([['a', 2], ['b', 1]]), metrics: { c: fresh({ slotsBusy: 2 }) } }))
    // a 2/4 = 0.5 (local), b 1/2 = 0.5, c 2/2 full
    expect(order(r)).toEqual(['a', 'b', 'c'])
    expect(ok(r).targets[0]!.reasons[0]).toBe('strategy=least-loaded')
  })

  it('fastest: best measured speed among hosts with room, load aside', () => {
    const metrics = {
      a: fresh({ tokensPerSecEwma: 10, latencyMsEwma: 100 }),
      b: fresh({ tokensPerSecEwma: 80, latencyMsEwma: 100, slotsBusy: 1 }),
      c: fresh({ tokensPerSecEwma: 90, latencyMsEwma: 100, slotsBusy: 2 })
    }
    expect(order(rank(input({ metrics, request: { strategy: 'fastest' } })))).toEqual(['b', 'a', 'c'])
  })

  it('round-robin: each host in turn, per model, with the cursor passed in and out', () => {
    const picks: string[] = []
    let rr: ReadonlyMap<string, string> = new Map()
    for (let i = 0; i < 6; i++) {
      const r = ok(rank(input({ request: { strategy: 'round-robin' }, roundRobin: rr })))
      picks.push(r.targets[0]!.peerId)
      rr = r.roundRobin
    }
    expect(picks).toEqual(['a', 'b', 'c', 'a', 'b', 'c'])
    // a host that left does not reset the turn: after b comes c, then a
    const r = ok(rank(input({ nodes: [node('a'), node('c')], request: { strategy: 'round-robin' }, roundRobin: new Map([['tiny', 'b']]) })))
    expect(r.targets.map((t) => t.peerId)).toEqual(['c', 'a'])
    // another model's cursor is untouched
    expect(ok(rank(input({ request: { strategy: 'round-robin' }, roundRobin: new Map([['other', 'b']]) }))).roundRobin)
      .toEqual(new Map([['other', 'b'], ['tiny', 'a']]))
  })

  it('round-robin skips ahead of a host known to be full', () => {
    const r = rank(input({ request: { strategy: 'round-robin' }, inflight: new Map([['a', 2]]) }))
    expect(order(r)).toEqual(['b', 'c', 'a'])
  })

  it('random: uniform over hosts, from the injected source', () => {
    const count: Record<string, number> = { a: 0, b: 0, c: 0 }
    const rnd = seeded(7)
    for (let i = 0; i < 3000; i++) count[order(rank(input({ request: { strategy: 'random' }, random: rnd })))[0]!]!++
    for (const n of Object.values(count)) expect(n / 3000).toBeCloseTo(1 / 3, 1)
    // the same source gives the same answer: pure
    expect(order(rank(input({ request: { strategy: 'random' }, random: seeded(3) })))).toEqual(order(rank(input({ request: { strategy: 'random' }, random: seeded(3) }))))
  })

  it('uses the configured default strategy when the request names none', () => {
    expect(ok(rank(input({ defaultStrategy: 'least-loaded' }))).strategy).toBe('least-loaded')
    expect(ok(rank(input({ defaultStrategy: 'least-loaded', request: { strategy: 'fastest' } }))).strategy).toBe('fastest')
  })
})

describe('rank: prefix-affinity', () => {
  const nodes = [node('a'), node('b'), node('c'), node('d')]

  it('sends a conversation to the same host from every entry agent, whatever their own load view', () => {
    for (let k = 0; k < 20; k++) {
      const choices = new Set<string>()
      for (const [self, inflight] of [['a', new Map([['b', 1]])], ['b', new Map()], ['c', new Map([['a', 1], ['d', 1]])]] as const) {
        const r = ok(rank(input({ nodes, selfPeerId: self, inflight, random: seeded(k), request: { strategy: 'prefix-affinity', prefixKey: `conv-${k}` } })))
        choices.add(r.targets[0]!.peerId)
        expect(r.targets[0]!.reasons).toContain('affinity=hit')
      }
      expect(choices.size).toBe(1)
    }
  })

  it('spreads different conversations over the hosts', () => {
    const hosts = new Set<string>()
    for (let k = 0; k < 40; k++) hosts.add(order(rank(input({ nodes, request: { strategy: 'prefix-affinity', prefixKey: `c${k}` } })))[0]!)
    expect(hosts.size).toBe(4)
  })

  it('falls back to performance when its host is saturated, and says so', () => {
    const req = { strategy: 'prefix-affinity' as const, prefixKey: 'conv-x' }
    const home = order(rank(input({ nodes, request: req })))[0]!
    const r = ok(rank(input({ nodes, request: req, metrics: { [home]: fresh({ slotsBusy: 2 }) } })))
    expect(r.targets[0]!.peerId).not.toBe(home)
    expect(r.targets.at(-1)!.peerId).toBe(home)
    expect(r.targets[0]!.reasons.find((x) => x.startsWith('affinity='))).toMatch(/^affinity=saturated\(.+ load=1\.00>=1\)$/)
  })

  it('without a prefix key, is performance', () => {
    const r = ok(rank(input({ request: { strategy: 'prefix-affinity' } })))
    expect(r.strategy).toBe('prefix-affinity')
    expect(r.targets[0]!.reasons).toContain('affinity=none(no prefix key)')
    expect(r.targets[0]!.peerId).toBe('a')
  })
})

describe('rank: candidates', () => {
  it('skips unreachable, excluded, open-circuit and not-ready hosts, and says why', () => {
    const nodes = [node('a', []), node('b'), node('c'), node('d'), node('e', [{ state: 'loading' }]), node('f'), node('g', [{ model: 'other' }])]
    const r = ok(rank(input({
      nodes,
      reachable: new Set(['b', 'd', 'e', 'f', 'g']),
      request: { exclude: ['f'] },
      circuits: new Map([['d', 'open'], ['b', 'half-open']])
    })))
    expect(r.targets.map((t) => t.peerId)).toEqual(['b'])
    expect(r.targets[0]!.reasons).toContain('circuit=half-open')
    expect(r.skipped).toEqual([
      { peerId: 'c', reason: 'unreachable' },
      { peerId: 'd', reason: 'circuit-open' },
      { peerId: 'e', reason: 'not-ready' },
      { peerId: 'f', reason: 'excluded' }
    ])
  })

  it('ranks cold runners only when allowed, after loaded ones', () => {
    const nodes = [node('a', [{ state: 'loading' }]), node('b')]
    expect(order(rank(input({ nodes })))).toEqual(['b'])
    const r = ok(rank(input({ nodes, request: { allowCold: true }, inflight: new Map([['b', 2]]) })))
    expect(r.targets.map((t) => [t.peerId, t.cold])).toEqual([['b', false], ['a', true]])
    expect(r.allFull).toBe(true)
    expect(r.targets[1]!.reasons).toContain('cold')
  })

  it('picks the ready runner with the most slots on a host', () => {
    const r = ok(rank(input({ nodes: [node('a', [{ slots: 1 }, { slots: 4 }, { slots: 8, state: 'failed' }])] })))
    expect(r.targets[0]!.runnerId).toBe('a-r1')
    expect(r.targets[0]!.load.slots).toBe(5)
  })

  it('answers why nothing can serve the request', () => {
    const nodes = [node('a', []), node('b'), node('c', [{ state: 'loading' }])]
    const fail = (over: Parameters<typeof input>[0]): { code: string, message: string } => {
      const r = rank(input({ nodes, ...over }))
      if (r.ok) throw new Error('expected failure')
      return { code: r.code, message: r.message }
    }
    expect(fail({ request: { model: 'nope' } })).toEqual({ code: 'MODEL_NOT_FOUND', message: "no host in the mesh serves model 'nope'" })
    expect(fail({ reachable: new Set() })).toEqual({ code: 'NO_CAPACITY', message: "no host serving model 'tiny' is reachable" })
    expect(fail({ reachable: new Set(['b', 'c']), request: { exclude: ['b'] } })).toEqual({ code: 'NO_CAPACITY', message: "model 'tiny' is still loading" })
    expect(fail({ reachable: new Set(['b']), request: { exclude: ['b'] } }).message).toBe("every host serving model 'tiny' was tried")
    expect(fail({ reachable: new Set(['b']), circuits: new Map([['b', 'open']]) }).message).toBe("every host serving model 'tiny' is failing (circuit open)")
  })
})
