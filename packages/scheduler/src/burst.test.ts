import { describe, expect, it } from 'vitest'
import { mulberry32, nodeRecord } from '@llmesh/testkit'
import type { NodeRecord } from '@llmesh/protocol'
import type { TargetMetrics } from './cluster-view.js'
import { Admission } from './admission.js'
import { Claims, type ReportingPeer } from './claims.js'
import { Dispatch, Dispatcher, type DispatchAction } from './dispatch/index.js'
import { rank, type RankTuning } from './rank.js'
import type { Strategy } from './strategy.js'

/**
 * Multi-entry coordination, simulated in memory: three agents (routers r0..r2, each on its
 * host h0..h2) receive 30 requests each "at once" against 3 hosts x 2 slots. Each tick, every
 * router routes one request; a router sees its own claims live and the other routers' claims
 * as published at the end of the previous tick; the hosts' own heartbeats are slower than the
 * burst, so every router has their reports from just before it (h1 and h2 each serving one
 * request from outside llmesh, which no router claims). Targets run `Admission` (2 slots + a
 * queue); each router runs the real dispatch machine (`Dispatch`, with its own `Dispatcher`):
 * first choice, next on "busy" (whose answer carries the target's admission snapshot, which
 * the router remembers), queue when every host is full (at its first choice), next on "queue
 * full", 429 when none is left. Baselines: routers that see no claims of other routers
 * ('own-only'), and routers that see neither claims nor anything but the stale reports
 * ('none', the uncoordinated routers of the seed: no claims of their own, and busy answers
 * without figures).
 */

const HOSTS = ['h0', 'h1', 'h2']
const SLOTS = 2
const QUEUE = 40
const PER_ROUTER = 30

type Mode = 'claims' | 'own-only' | 'none'

interface SimResult {
  accepted: Record<string, number>
  firstChoice: Record<string, number>
  forwards: Record<string, number>
  busy: number
  queueFull: number
  rejected: number
  maxHeld: number
}

const node = (peerId: string): NodeRecord => nodeRecord(peerId, { runners: [{ slots: SLOTS }] })

const seeded = mulberry32

function simulate (mode: Mode, seed: number, strategy: Strategy = 'performance'): SimResult {
  const random = seeded(seed)
  const now = 0
  const nodes = HOSTS.map(node)
  const hosts = new Map(HOSTS.map((h) => [h, new Admission<null>({ slots: SLOTS, capacity: QUEUE })]))
  // traffic from outside llmesh, reported in the last heartbeats before the burst
  hosts.get('h1')!.acquire({ id: 'external', value: null }, now)
  hosts.get('h2')!.acquire({ id: 'external', value: null }, now)
  const reports = new Map(HOSTS.map((h) => [h, { ...hosts.get(h)!.snapshot(), tokensPerSec: 20, latencyMs: 200 }]))
  // each router's memory: its claims, and what "busy" answers (which carry the target's
  // admission snapshot) taught it
  const routers = new Map(HOSTS.map((h) => [h, new Dispatcher({ random, defaultStrategy: strategy })]))
  const published = new Map(HOSTS.map((h) => [h, {} as Record<string, number>]))
  const zero = (): Record<string, number> => Object.fromEntries(HOSTS.map((h) => [h, 0]))
  const out: SimResult = { accepted: zero(), firstChoice: zero(), forwards: zero(), busy: 0, queueFull: 0, rejected: 0, maxHeld: 0 }

  const dispatch = (router: string, id: string): void => {
    const peers: ReportingPeer[] = HOSTS.map((h) => ({
      peerId: h,
      lastHeardAt: now,
      metrics: { ...reports.get(h)!, claims: mode === 'claims' ? published.get(h)! : {} }
    }))
    const view = { now, selfPeerId: router, nodes, peers, reachable: new Set(HOSTS) }
    const d = routers.get(router)!
    const m = new Dispatch(d)
    let first = true
    for (let action: DispatchAction = m.start({ model: 'tiny' }, view); ;) {
      if (action.kind === 'fail') {
        out.rejected++
        return
      }
      if (action.kind === 'wait') throw new Error('no host fails here: nothing to back off from')
      const target = action.target.peerId
      if (first) out.firstChoice[target]!++
      first = false
      out.forwards[target]!++
      const host = hosts.get(target)!
      const res = host.acquire({ id, mayQueue: action.mayQueue, value: null }, now)
      out.maxHeld = Math.max(out.maxHeld, host.busy + host.queueDepth)
      expect(host.busy + host.queueDepth).toBeLessThanOrEqual(SLOTS + QUEUE)
      if (res.kind === 'granted' || res.kind === 'queued') {
        if (mode !== 'none') d.claims.claim(target)
        m.next({ kind: 'served' })
        out.accepted[target]!++
        return
      }
      if (res.kind === 'busy') {
        out.busy++
        action = m.next({ kind: 'failed', failure: 'busy', code: 'BUSY', message: 'busy', ...(mode !== 'none' ? { admission: host.snapshot() } : {}) }, view)
      } else if (res.kind === 'rejected' && res.reason === 'full') {
        out.queueFull++
        action = m.next({ kind: 'failed', failure: 'queue-full', code: 'QUEUE_FULL', message: 'queue full', retryAfterSec: res.retryAfterSec }, view)
      } else {
        throw new Error(`unexpected admission answer ${res.kind}`)
      }
    }
  }

  for (let tick = 0; tick < PER_ROUTER; tick++) {
    const order = [...HOSTS]
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1))
      ;[order[i], order[j]] = [order[j]!, order[i]!]
    }
    for (const router of order) dispatch(router, `${router}-${tick}`)
    // routers publish their claims as they change (one tick late here); the hosts' own
    // heartbeats are slower than the whole burst, so their reports stay as they were
    for (const h of HOSTS) published.set(h, routers.get(h)!.claims.toRecord())
  }
  return out
}

const spread = (counts: Record<string, number>): number => Math.max(...Object.values(counts)) - Math.min(...Object.values(counts))

describe('multi-entry coordination: 3 routers x 30 requests at once, 3 hosts x 2 slots', () => {
  it('with claims, spreads the burst evenly; without, the routers pile onto the host that looked idle', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const withClaims = simulate('claims', seed)
      const ownOnly = simulate('own-only', seed)
      const none = simulate('none', seed)

      for (const r of [withClaims, ownOnly, none]) {
        // the target's admission holds: never more than slots + queue on a host
        expect(r.maxHeld).toBeLessThanOrEqual(SLOTS + QUEUE)
        expect(Object.values(r.accepted).reduce((a, b) => a + b, 0) + r.rejected).toBe(3 * PER_ROUTER)
      }

      // coordinated: every request placed, even to within a couple of requests, at most one
      // wasted forward per simultaneous first pick and per host with unclaimed traffic
      expect(withClaims.rejected).toBe(0)
      expect(withClaims.queueFull).toBe(0)
      expect(spread(withClaims.accepted)).toBeLessThanOrEqual(2)
      // (first choices follow each router's spread order once its own host is full: a third
      // each, give or take a few)
      expect(spread(withClaims.firstChoice)).toBeLessThanOrEqual(6)
      expect(withClaims.busy).toBeLessThanOrEqual(7)

      // no coordination at all (each router sees only the hosts' last reports): every first
      // choice is h0, which fills to slots + queue before anything goes elsewhere
      expect(none.firstChoice['h0']).toBe(3 * PER_ROUTER)
      expect(none.accepted['h0']).toBe(SLOTS + QUEUE)
      expect(spread(none.accepted)).toBeGreaterThanOrEqual(15)
      expect(none.busy + none.queueFull).toBeGreaterThan(40)

      // own claims only: each router spreads its own requests, so the sum is even too, but
      // they overshoot the same hosts at first and collect "busy" answers claims spare
      expect(ownOnly.rejected).toBe(0)
      expect(ownOnly.busy).toBeGreaterThan(withClaims.busy)
    }
  })

  it('spreads a burst over identical hosts under every strategy that looks at load', () => {
    for (const strategy of ['least-loaded', 'performance', 'round-robin'] as const) {
      const r = simulate('claims', 11, strategy)
      expect(r.rejected).toBe(0)
      // round-robin does not look at queue lengths once every host is full: a little wider
      expect(spread(r.accepted)).toBeLessThanOrEqual(strategy === 'round-robin' ? 4 : 2)
    }
  })

  it('routers that see identical idle hosts at the same moment start at different ones', () => {
    // three gateway routers (no runner of their own) in the view, two requests each, each
    // router seeing only its own claims: the six requests fill the six slots without a
    // collision, whatever the peer ids and the random source
    const cases = [['g0', 'g1', 'g2'], ['a', 'm', 'z'], ['h00', 'h11', 'zz']]
    for (const gateways of cases) {
      expect(fillFromGateways(gateways, { strategy: 'least-loaded', random: seeded(gateways.length) })).toEqual([2, 2, 2])
    }
  })

  it('performance: hosts whose measured difference is within their requests\' own variation fill without a collision', () => {
    // three equal hosts measured on a busy machine: EWMAs a quarter apart, single requests varying
    // by about as much (what the request benchmark's hosts report); each gateway sees only
    // its own claims
    const metrics = new Map([
      ['h0', { latencyMsEwma: 30, latencyMsDev: 15, tokensPerSecEwma: 4200, tokensPerSecDev: 1200 }],
      ['h1', { latencyMsEwma: 36, latencyMsDev: 18, tokensPerSecEwma: 3800, tokensPerSecDev: 1000 }],
      ['h2', { latencyMsEwma: 40, latencyMsDev: 20, tokensPerSecEwma: 3600, tokensPerSecDev: 900 }]
    ].map(([h, m]) => [h as string, { heartbeatAt: 0, slotsTotal: SLOTS, slotsBusy: 0, queueDepth: 0, ...m as object }]))
    const fill = (tuning: RankTuning = {}): number[] =>
      fillFromGateways(['g0', 'g1', 'g2'], { strategy: 'performance', expectedTokens: 64, metrics, random: seeded(1), tuning })
    expect(fill()).toEqual([2, 2, 2])
    // with the band held at 10%, every gateway starts at the host that measured fastest
    expect(fill({ performanceMaxTieBand: 0.1 })[0]).toBeGreaterThan(SLOTS)
  })
})

/**
 * Three gateway routers (no runner of their own) in the view send two requests each to the
 * hosts, each router seeing only its own claims, in the same instant; returns how many each
 * host got, in HOSTS order.
 */
function fillFromGateways (gateways: string[], opts: { strategy: Strategy, random: () => number, expectedTokens?: number, metrics?: ReadonlyMap<string, TargetMetrics>, tuning?: RankTuning }): number[] {
  const nodes = [...HOSTS.map(node), ...gateways.map((g) => ({ ...node(g), runners: [] }))]
  const load = new Map(HOSTS.map((h) => [h, 0]))
  for (const self of gateways) {
    const claims = new Claims()
    for (let k = 0; k < 2; k++) {
      const r = rank({
        view: { nodes, metrics: opts.metrics ?? new Map() },
        request: { model: 'tiny', strategy: opts.strategy, ...(opts.expectedTokens != null ? { expectedTokens: opts.expectedTokens } : {}) },
        selfPeerId: self, reachable: new Set(HOSTS), inflight: claims.inflight, random: opts.random, now: 0
      }, opts.tuning)
      if (!r.ok) throw new Error(r.message)
      const pick = r.targets[0]!.peerId
      claims.claim(pick)
      load.set(pick, load.get(pick)! + 1)
    }
  }
  return [...load.values()]
}
