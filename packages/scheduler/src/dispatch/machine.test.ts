import { describe, expect, it } from 'vitest'
import { mulberry32 } from '@llmesh/testkit'
import type { AdmissionSnapshot, ErrorCode, NodeRecord } from '@llmesh/protocol'
import type { ReportingPeer } from '../claims.js'
import type { Failure } from '../outcome.js'
import { BACKOFF_BASE_MS, BUSY_REPORT_TTL_MS, MAX_ATTEMPTS, MAX_DISPATCHES, RETRY_BUDGET_MIN_RETRIES } from '../constants.js'
import { Dispatcher } from './dispatcher.js'
import { Dispatch } from './machine.js'
import type { AttemptFailure, DispatchAction, DispatchView, DoneAction, FailAction } from './types.js'

const SELF = 'self'
const NOW = 1_000_000

function node (peerId: string, runners = 1): NodeRecord {
  return {
    peerId, name: peerId, version: 't', protocol: 1, addrs: [], api: '',
    hardware: { cpus: 1, memBytes: 1, platform: 'linux', arch: 'x64' },
    models: [],
    runners: Array.from({ length: runners }, (_, i) => ({ id: `${peerId}-r${i}`, kind: 'llama-server' as const, model: 'tiny', state: 'ready' as const, slots: 2 })),
    startedAt: 0, updatedAt: 0, sig: ''
  }
}

/** A view of `hosts` (and the own host, a gateway without runners), at `now`, with the heartbeats' busy slots. */
function view (hosts: string[], opts: { now?: number, busy?: Record<string, number>, heardAt?: number } = {}): DispatchView {
  const now = opts.now ?? NOW
  const peers: ReportingPeer[] = hosts.filter((h) => opts.busy?.[h] != null).map((h) => ({
    peerId: h, state: 'alive', lastHeardAt: opts.heardAt ?? now - 100, metrics: { slotsBusy: opts.busy![h]!, slotsTotal: 2, queueDepth: 0 }
  }))
  return { now, selfPeerId: SELF, nodes: [node(SELF, 0), ...hosts.map((h) => node(h))], peers, reachable: new Set(hosts) }
}

const CODES: Partial<Record<Failure, ErrorCode>> = { busy: 'BUSY', 'queue-full': 'QUEUE_FULL', connect: 'PEER_UNREACHABLE', stall: 'STALLED', 'client-error': 'INVALID_REQUEST' }

/** A target's failed answer, as the executor reports it. */
const failed = (failure: Failure, extra: Partial<AttemptFailure> = {}): AttemptFailure =>
  ({ kind: 'failed', failure, code: CODES[failure] ?? 'PEER_UNREACHABLE', message: `${failure} answer`, ...extra })

type Answer = (peerId: string, mayQueue: boolean) => AttemptFailure | 'served'

interface Run { tries: Array<[string, boolean]>, waits: number[], end: DoneAction | FailAction }

/** Drives one request through the machine as the agent's executor does, the hosts answering as `answer` says. */
function run (d: Dispatcher, v: DispatchView | (() => DispatchView), answer: Answer, spec = { model: 'tiny', priority: 5 }): Run {
  const at = typeof v === 'function' ? v : () => v
  const m = new Dispatch(d)
  const out: Run = { tries: [], waits: [], end: undefined as unknown as FailAction }
  let action: DispatchAction = m.start(spec, at())
  for (let guard = 0; guard < 1000; guard++) {
    if (action.kind === 'fail') {
      out.end = action
      return out
    }
    if (action.kind === 'wait') {
      out.waits.push(action.ms)
      action = m.next({ kind: 'waited' }, at())
      continue
    }
    out.tries.push([action.target.peerId, action.mayQueue])
    const a = answer(action.target.peerId, action.mayQueue)
    if (a === 'served') {
      out.end = m.next({ kind: 'served' })
      return out
    }
    action = m.next(a, at())
  }
  throw new Error('the machine did not end')
}

const dispatcher = (seed = 1, strategy: 'least-loaded' | 'round-robin' | 'performance' = 'least-loaded'): Dispatcher =>
  new Dispatcher({ random: mulberry32(seed), defaultStrategy: strategy })

describe('Dispatch', () => {
  it('tries the best host and is done once it serves, with the reasons for the route header', () => {
    const r = run(dispatcher(), view(['a', 'b'], { busy: { a: 0, b: 1 } }), () => 'served')
    expect(r.tries).toEqual([['a', false]])
    expect(r.end).toMatchObject({ kind: 'done', attempts: 1 })
    expect((r.end as DoneAction).reasons).toEqual(expect.arrayContaining(['strategy=least-loaded', 'rank=1/2', 'remote']))
  })

  it('fails over on busy answers, and goes round again with queueing once every host answered busy', () => {
    const r = run(dispatcher(), view(['a', 'b'], { busy: { a: 0, b: 1 } }), (p, mayQueue) => mayQueue ? 'served' : failed('busy'))
    expect(r.tries).toEqual([['a', false], ['b', false], ['a', true]])
    expect(r.waits).toEqual([])
    const reasons = (r.end as DoneAction).reasons
    expect(reasons).toEqual(expect.arrayContaining(['may-queue', 'tried a: busy', 'tried b: busy', 'all busy: queueing']))
    // the switch to queueing is a round of its own: a, b, the switch, a again
    expect((r.end as DoneAction).attempts).toBe(4)
  })

  it('once every host is full, waits at its first choice unless that one is clearly busier', () => {
    // the heartbeats say a is idle and b, c half busy; the busy answers say every host is full,
    // a with `firstQueue` waiting
    const hosts = (firstQueue: number, firstFails = false): Run => {
      const figures: Record<string, AdmissionSnapshot> = { a: { slotsBusy: 2, slotsTotal: 2, queueDepth: firstQueue }, b: { slotsBusy: 2, slotsTotal: 2, queueDepth: 0 }, c: { slotsBusy: 2, slotsTotal: 2, queueDepth: 0 } }
      return run(dispatcher(), view(['a', 'b', 'c'], { busy: { a: 0, b: 1, c: 1 } }), (p, mayQueue) => {
        if (firstFails && p === 'a') return failed('connect')
        return mayQueue ? 'served' : failed('busy', { admission: figures[p]! })
      })
    }
    // a's one waiting request is within one of the others: the request waits at a, where it went
    // first, though the figures now rank b and c before it
    const near = hosts(1)
    expect(near.tries[0]).toEqual(['a', false])
    expect(near.tries.at(-1)).toEqual(['a', true])
    expect((near.end as DoneAction).reasons).toContain('all busy: queueing')
    // five waiting at a: it waits where the queue is short
    const far = hosts(5)
    expect(far.tries[0]).toEqual(['a', false])
    expect(far.tries.at(-1)![1]).toBe(true)
    expect(far.tries.at(-1)![0]).not.toBe('a')
    // a first choice that failed (not full) is no place to wait
    const gone = hosts(0, true)
    expect(gone.tries[0]).toEqual(['a', false])
    expect(gone.tries.filter(([p]) => p === 'a')).toHaveLength(1)
    expect(gone.tries.at(-1)![1]).toBe(true)
  })

  it('queues at once, at its first choice, when its busy answer leaves every host full', () => {
    // the heartbeats say b and c are full; a, idle in its last heartbeat, answers busy with
    // figures that say it is full too
    const r = run(dispatcher(), view(['a', 'b', 'c'], { busy: { a: 0, b: 2, c: 2 } }), (p, mayQueue) =>
      mayQueue ? 'served' : failed('busy', { admission: { slotsBusy: 2, slotsTotal: 2, queueDepth: 0 } }))
    expect(r.tries).toEqual([['a', false], ['a', true]])
    expect((r.end as DoneAction).reasons).toEqual(expect.arrayContaining(['tried a: busy', 'all full: queueing', 'may-queue']))
  })

  it('fails over after a host failure, waiting a backoff drawn from the seeded source', () => {
    const waits: number[] = []
    for (const seed of [1, 2, 3]) {
      const r = run(dispatcher(seed), view(['a', 'b'], { busy: { a: 0, b: 1 } }), (p) => p === 'a' ? failed('connect') : 'served')
      expect(r.tries).toEqual([['a', false], ['b', false]])
      // (a backoff that came out 0 ms is no wait at all)
      expect(r.waits.length).toBeLessThanOrEqual(1)
      waits.push(...r.waits)
      expect((r.end as DoneAction).reasons).toContain('tried a: connect')
      // the same seed, the same decisions
      expect(run(dispatcher(seed), view(['a', 'b'], { busy: { a: 0, b: 1 } }), (p) => p === 'a' ? failed('connect') : 'served')).toEqual(r)
    }
    expect(waits.length).toBeGreaterThan(0)
    for (const ms of waits) expect(ms).toBeGreaterThan(0)
    for (const ms of waits) expect(ms).toBeLessThan(BACKOFF_BASE_MS)
  })

  it('gives up after MAX_ATTEMPTS host failures, with the last host\'s error', () => {
    const hosts = Array.from({ length: MAX_ATTEMPTS + 2 }, (_, i) => `h${i}`)
    const r = run(dispatcher(), view(hosts), () => failed('stall'))
    expect(r.tries).toHaveLength(MAX_ATTEMPTS)
    expect(r.end).toEqual({ kind: 'fail', code: 'STALLED', message: 'stall answer' })
  })

  it('fails at once when the retry budget is spent', () => {
    const d = dispatcher()
    while (d.budget.tryRetry(NOW)) { /* spend it: RETRY_BUDGET_MIN_RETRIES and a share of the requests */ }
    expect(d.budget.totals(NOW).retries).toBeGreaterThanOrEqual(RETRY_BUDGET_MIN_RETRIES)
    const r = run(d, view(['a', 'b']), (p) => p === 'a' ? failed('connect') : 'served')
    expect(r.tries).toEqual([['a', false]])
    expect(r.end).toEqual({ kind: 'fail', code: 'PEER_UNREACHABLE', message: 'connect answer' })
  })

  it('busy answers do not draw on the retry budget', () => {
    const d = dispatcher()
    while (d.budget.tryRetry(NOW)) { /* spend it */ }
    const r = run(d, view(['a', 'b', 'c']), (p) => p === 'c' ? 'served' : failed('busy'))
    expect(r.tries.map(([p]) => p)).toContain('c')
    expect(r.end.kind).toBe('done')
  })

  it('answers QUEUE_FULL with the smallest Retry-After when every queue is full', () => {
    const after: Record<string, number> = { a: 3, b: 7, c: 5 }
    const r = run(dispatcher(), view(['a', 'b', 'c']), (p, mayQueue) => mayQueue ? failed('queue-full', { retryAfterSec: after[p]! }) : failed('busy'))
    expect(r.tries.filter(([, q]) => q)).toHaveLength(3)
    expect(r.end).toMatchObject({ kind: 'fail', code: 'QUEUE_FULL', retryAfterSec: 3 })
  })

  it('keeps a host failure over a busy answer as the error it fails with', () => {
    const r = run(dispatcher(), view(['a', 'b'], { busy: { a: 0, b: 1 } }), (p) => p === 'a' ? failed('busy') : failed('client-error'))
    expect(r.end).toEqual({ kind: 'fail', code: 'INVALID_REQUEST', message: 'client-error answer' })
  })

  it('stops when the request was aborted, and counts it against no host', () => {
    const d = dispatcher()
    const r = run(d, view(['a', 'b']), () => failed('aborted'))
    expect(r.tries).toHaveLength(1)
    expect(r.end).toMatchObject({ kind: 'fail' })
    expect(d.health.circuits(NOW).size).toBe(0)
    expect(d.health.stats.get(r.tries[0]![0], NOW)?.successRate ?? 1).toBe(1)
  })

  it('says what the mesh serves when no host serves the model', () => {
    const r = run(dispatcher(), view(['a']), () => 'served', { model: 'nope', priority: 5 })
    expect(r.end).toEqual({ kind: 'fail', code: 'MODEL_NOT_FOUND', message: "no host in the mesh serves model 'nope'; models in the mesh: tiny" })
  })

  it('stops after MAX_DISPATCHES rounds, whatever the rules say', () => {
    const hosts = Array.from({ length: MAX_DISPATCHES + 8 }, (_, i) => `h${String(i).padStart(2, '0')}`)
    const r = run(dispatcher(), view(hosts), () => failed('busy'))
    expect(r.tries).toHaveLength(MAX_DISPATCHES)
    expect(r.end).toEqual({ kind: 'fail', code: 'BUSY', message: 'busy answer' })
  })

  it('counts a host full as its busy answer described it, until its next heartbeat or BUSY_REPORT_TTL_MS', () => {
    const d = dispatcher()
    let now = NOW
    let heardAt = now - 100
    const at = (): DispatchView => view(['a', 'b'], { now, heardAt, busy: { a: 0, b: 1 } })
    const full = (p: string): AttemptFailure | 'served' => p === 'a' ? failed('busy', { admission: { slotsBusy: 2, slotsTotal: 2, queueDepth: 0 } }) : 'served'
    const tries = (answer: Answer): string[] => run(d, at, answer).tries.map(([p]) => p)
    expect(tries(full)).toEqual(['a', 'b'])
    // the busy answer said a is full: straight to b
    now += 50
    expect(tries(full)).toEqual(['b'])
    // a heartbeat of a newer than the answer: a is first again
    heardAt = now + 1
    now += 50
    expect(tries(() => 'served')).toEqual(['a'])
    // without a heartbeat, the answer counts for BUSY_REPORT_TTL_MS only
    expect(tries(full)).toEqual(['a', 'b'])
    now += BUSY_REPORT_TTL_MS + 1
    expect(tries(full)).toEqual(['a', 'b'])
  })

  it('keeps the round-robin cursor across requests', () => {
    const d = dispatcher(7, 'round-robin')
    const firsts = Array.from({ length: 4 }, () => run(d, view(['a', 'b', 'c']), () => 'served').tries[0]![0])
    expect(firsts).toEqual(['a', 'b', 'c', 'a'])
  })
})
