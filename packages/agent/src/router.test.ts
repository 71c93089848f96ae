import { describe, expect, it } from 'vitest'
import { pino } from 'pino'
import { FakeClock, nodeRecord } from '@llmesh/testkit'
import { BusyError, LlmeshError, QueueFullError, type AdmissionSnapshot, type NodeRecord, type Signal } from '@llmesh/protocol'
import { Abort } from '@llmesh/kit'
import type { ReportingPeer } from '@llmesh/scheduler'
import type { ForwardOptions, ForwardTarget, Forwarded, Forwarder } from './forwarders.js'
import { Router, type DispatchViewSource, type RouterComponents } from './router.js'

const SELF = 'peer-self'

/** A host with `runners` ready runners of 'm', 2 slots each. */
const node = (peerId: string, runners = 1): NodeRecord => nodeRecord(peerId, { runners: Array.from({ length: runners }, () => ({ model: 'm' })) })

async function * chunks (...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield new TextEncoder().encode(p)
}

async function * failing (err: Error): AsyncGenerator<Uint8Array> {
  yield * []
  throw err
}

type Behaviour = (opts: ForwardOptions) => Forwarded | Error

/** The agent's side of the view: the records of `nodes`, the peers membership knows, the reachable ones. */
function viewOf (nodes: () => NodeRecord[], members: () => ReportingPeer[], reachable: () => ReadonlySet<string>): DispatchViewSource {
  return { dispatchView: (now) => ({ now, selfPeerId: SELF, nodes: nodes(), peers: members(), reachable: reachable() }) }
}

/** One forwarder for the own host and the peers alike: the targets answer as `forward` says. */
function forwarder (forward: (t: ForwardTarget, opts: ForwardOptions) => Promise<Forwarded>): Pick<RouterComponents, 'local' | 'remote'> {
  const f: Forwarder = { forward }
  return { local: f, remote: f }
}

const silent = pino({ level: 'silent' })

function router (peers: string[], behaviour: Record<string, Behaviour>, calls: Array<{ peer: string, mayQueue: boolean }>, clock = new FakeClock()): Router {
  return new Router({
    view: viewOf(() => [node(SELF, 0), ...peers.map((p) => node(p))], () => [], () => new Set(peers)),
    ...forwarder(async (t, opts) => {
      calls.push({ peer: t.peerId, mayQueue: opts.mayQueue })
      const r = behaviour[t.peerId]!(opts)
      if (r instanceof Error) throw r
      return r
    }),
    defaultStrategy: 'round-robin',
    logger: silent,
    random: () => 0,
    clock
  })
}

const ok = (): Forwarded => ({ status: 200, contentType: 'application/json', runnerId: 'r', body: chunks('{"ok":', 'true}') })

async function dispatch (r: Router): Promise<{ text: string, peer: string, route: string }> {
  const res = await r.dispatch({ id: 'q', path: '/v1/chat/completions', model: 'm', body: {}, priority: 5, deadline: Date.now() + 10_000, signal: new AbortController().signal })
  let text = ''
  for await (const c of res.body) text += new TextDecoder().decode(c)
  return { text, peer: res.target.peerId, route: res.target.reasons.join('; ') }
}

describe('Router', () => {
  it('fails over to the next host on BUSY, a connect error or a stall before the first chunk', async () => {
    const calls: Array<{ peer: string, mayQueue: boolean }> = []
    const r = router(['a', 'b', 'c', 'd'], {
      a: () => new LlmeshError('BUSY', 'full'),
      b: () => new LlmeshError('PEER_UNREACHABLE', 'gone'),
      c: () => ({ status: 200, contentType: 'text/event-stream', runnerId: 'r', body: failing(new LlmeshError('STALLED', 'no token')) }),
      d: ok
    }, calls)
    const res = await dispatch(r)
    expect(res.peer).toBe('d')
    expect(res.text).toBe('{"ok":true}')
    expect(calls.map((c) => c.peer)).toEqual(['a', 'b', 'c', 'd'])
    expect(res.route).toContain('tried a: busy')
    expect(res.route).toContain('tried b: connect')
    expect(res.route).toContain('tried c: stall')
    expect(r.claims.toRecord()).toEqual({})
  })

  it('takes the token rate a forwarder already read from the stream, and reads it itself otherwise', async () => {
    const clock = new FakeClock()
    const timed = (rate?: { tokensPerSec: number }) => (): Forwarded => ({
      status: 200, contentType: 'application/json', runnerId: 'r', body: chunks('{"ok":true,', '"timings":{"predicted_per_second":99}}'), ...(rate != null ? { rate } : {})
    })
    const scanned = router(['a'], { a: timed({ tokensPerSec: 42 }) }, [], clock)
    await dispatch(scanned)
    expect(scanned.health.stats.get('a', clock.now())?.tokensPerSecEwma).toBe(42)
    const own = router(['a'], { a: timed() }, [], clock)
    await dispatch(own)
    expect(own.health.stats.get('a', clock.now())?.tokensPerSecEwma).toBe(99)
  })

  it('queues when every host answered busy', async () => {
    const calls: Array<{ peer: string, mayQueue: boolean }> = []
    const r = router(['a', 'b'], {
      a: (o) => o.mayQueue ? ok() : new LlmeshError('BUSY', 'full'),
      b: () => new LlmeshError('BUSY', 'full')
    }, calls)
    const res = await dispatch(r)
    expect(res.peer).toBe('a')
    expect(calls).toEqual([{ peer: 'a', mayQueue: false }, { peer: 'b', mayQueue: false }, { peer: 'a', mayQueue: true }])
    // the switch to queueing is said as such, not as one more host tried
    expect(res.route).toContain('all busy: queueing')
    expect(res.route.match(/tried /g)).toHaveLength(2)
  })

  it('answers QUEUE_FULL with the smallest Retry-After when every queue is full', async () => {
    for (const [first, second] of [[7, 3], [3, 7]] as const) {
      const r = router(['a', 'b'], {
        a: (o) => o.mayQueue ? new QueueFullError('full', first) : new LlmeshError('BUSY', 'full'),
        b: (o) => o.mayQueue ? new QueueFullError('queue full', second) : new LlmeshError('BUSY', 'full')
      }, [])
      const err = await dispatch(r).then(() => undefined, (e: unknown) => e)
      expect(err).toBeInstanceOf(QueueFullError)
      expect((err as QueueFullError).retryAfterSec).toBe(3)
    }
  })

  it('counts a host full as its busy answer described it, until its next heartbeat', async () => {
    const calls: string[] = []
    const clock = new FakeClock()
    let heardAt = clock.now() - 100
    let aFull = true
    let report: AdmissionSnapshot | undefined = { slotsBusy: 2, slotsTotal: 2, queueDepth: 0 }
    const r = new Router({
      view: viewOf(
        () => [node(SELF, 0), node('a'), node('b')],
        // as the last heartbeats said: a idle, b half busy, so a comes first
        () => [{ peerId: 'a', slotsBusy: 0 }, { peerId: 'b', slotsBusy: 1 }].map(({ peerId, slotsBusy }) => ({ peerId, state: 'alive', lastHeardAt: heardAt, metrics: { slotsBusy, slotsTotal: 2, queueDepth: 0 } })),
        () => new Set(['a', 'b'])),
      ...forwarder(async (t) => {
        calls.push(t.peerId)
        if (t.peerId === 'a' && aFull) throw new BusyError('full', report)
        return ok()
      }),
      defaultStrategy: 'least-loaded',
      logger: silent,
      random: () => 0,
      clock
    })
    const next = async (): Promise<string[]> => {
      calls.length = 0
      await dispatch(r)
      return [...calls]
    }
    expect(await next()).toEqual(['a', 'b'])
    // the busy answer said a is full: straight to b, no second busy answer
    await clock.advance(50)
    expect(await next()).toEqual(['b'])
    // a heartbeat of a newer than the answer: a is first again
    aFull = false
    heardAt = clock.now() + 1
    await clock.advance(50)
    expect(await next()).toEqual(['a'])
    // without a heartbeat, the answer counts for BUSY_REPORT_TTL_MS only
    aFull = true
    expect(await next()).toEqual(['a', 'b'])
    await clock.advance(1001)
    expect(await next()).toEqual(['a', 'b'])
    // an answer without figures (an older peer) teaches nothing
    report = undefined
    await clock.advance(1001)
    expect(await next()).toEqual(['a', 'b'])
    expect(await next()).toEqual(['a', 'b'])
  })

  it('waits at its first choice once every host is full, unless that one is clearly busier', async () => {
    const run = async (firstQueue: number, firstFails = false): Promise<Array<{ peer: string, mayQueue: boolean }>> => {
      const calls: Array<{ peer: string, mayQueue: boolean }> = []
      // every host full; a (the first choice: least loaded as the heartbeats say) reports
      // `firstQueue` waiting in its busy answer, b and c none
      const figures: Record<string, AdmissionSnapshot> = { a: { slotsBusy: 2, slotsTotal: 2, queueDepth: firstQueue }, b: { slotsBusy: 2, slotsTotal: 2, queueDepth: 0 }, c: { slotsBusy: 2, slotsTotal: 2, queueDepth: 0 } }
      const clock = new FakeClock()
      const r = new Router({
        view: viewOf(
          () => [node(SELF, 0), node('a'), node('b'), node('c')],
          () => [{ peerId: 'a', busy: 0 }, { peerId: 'b', busy: 1 }, { peerId: 'c', busy: 1 }].map(({ peerId, busy }) => ({ peerId, state: 'alive', lastHeardAt: clock.now() - 100, metrics: { slotsBusy: busy, slotsTotal: 2, queueDepth: 0 } })),
          () => new Set(['a', 'b', 'c'])),
        ...forwarder(async (t, opts) => {
          calls.push({ peer: t.peerId, mayQueue: opts.mayQueue })
          if (firstFails && t.peerId === 'a') throw new LlmeshError('PEER_UNREACHABLE', 'gone')
          if (!opts.mayQueue) throw new BusyError('full', figures[t.peerId])
          return ok()
        }),
        defaultStrategy: 'least-loaded',
        logger: silent,
        random: () => 0,
        clock
      })
      const res = await r.dispatch({ id: 'q', path: '/v1/chat/completions', model: 'm', body: {}, priority: 5, deadline: Date.now() + 10_000, signal: new AbortController().signal })
      for await (const _ of res.body) { /* drain */ }
      return calls
    }
    // a's one waiting request is within one of the others: the request waits at a, where it
    // went first, though the figures now rank b and c before it
    const near = await run(1)
    expect(near[0]).toEqual({ peer: 'a', mayQueue: false })
    expect(near.at(-1)).toEqual({ peer: 'a', mayQueue: true })
    // five waiting at a: it waits where the queue is short
    const far = await run(5)
    expect(far[0]).toEqual({ peer: 'a', mayQueue: false })
    expect(far.at(-1)!.mayQueue).toBe(true)
    expect(far.at(-1)!.peer).not.toBe('a')
    // a first choice that failed (not full) is no place to wait
    const failed = await run(0, true)
    expect(failed[0]).toEqual({ peer: 'a', mayQueue: false })
    expect(failed.filter((c) => c.peer === 'a')).toHaveLength(1)
    expect(failed.at(-1)!.mayQueue).toBe(true)
  })

  it('does not retry a client error, and keeps a claim until the stream ends', async () => {
    const r = router(['a'], { a: () => new LlmeshError('INVALID_REQUEST', 'bad') }, [])
    await expect(dispatch(r)).rejects.toMatchObject({ code: 'INVALID_REQUEST' })
    const r2 = router(['a'], { a: ok }, [])
    const res = await r2.dispatch({ id: 'q', path: '/v1/chat/completions', model: 'm', body: {}, priority: 5, deadline: Date.now() + 1000, signal: new AbortController().signal })
    expect(r2.claims.get('a')).toBe(1)
    for await (const _ of res.body) { /* drain */ }
    expect(r2.claims.get('a')).toBe(0)
  })
})

describe('Router, the executor', () => {
  const request = (signal: Signal = new AbortController().signal): Parameters<Router['dispatch']>[0] =>
    ({ id: 'q', path: '/v1/chat/completions', model: 'm', body: {}, priority: 5, deadline: Date.now() + 10_000, signal })

  it('sends to the own host through the local forwarder and to peers through the remote one', async () => {
    const seen: string[] = []
    const answer = (via: string) => async (t: ForwardTarget): Promise<Forwarded> => {
      seen.push(`${via}:${t.peerId}`)
      if (t.peerId === SELF) throw new LlmeshError('BUSY', 'full')
      return ok()
    }
    // round-robin from the start of the peer ids: the own host first, then z
    const r = new Router({
      view: viewOf(() => [node(SELF), node('z')], () => [], () => new Set(['z'])),
      local: { forward: answer('local') },
      remote: { forward: answer('remote') },
      defaultStrategy: 'round-robin',
      logger: silent,
      random: () => 0,
      clock: new FakeClock()
    })
    const res = await r.dispatch(request())
    for await (const _ of res.body) { /* drain */ }
    expect(seen).toEqual([`local:${SELF}`, 'remote:z'])
    expect(res.target).toMatchObject({ peerId: 'z', local: false })
  })

  it('waits a host failure\'s backoff on its clock before the next host, and an abort ends the wait', async () => {
    for (const abortMidWait of [false, true]) {
      const clock = new FakeClock()
      const calls: Array<{ peer: string, mayQueue: boolean }> = []
      const r = new Router({
        view: viewOf(() => [node(SELF, 0), node('a'), node('b')], () => [], () => new Set(['a', 'b'])),
        ...forwarder(async (t) => {
          calls.push({ peer: t.peerId, mayQueue: false })
          if (t.peerId === 'a') throw new LlmeshError('PEER_UNREACHABLE', 'gone')
          return ok()
        }),
        defaultStrategy: 'round-robin',
        logger: silent,
        // the backoff after the first failure: half its 50 ms cap
        random: () => 0.5,
        clock
      })
      const abort = new Abort()
      let settled: unknown
      const done = r.dispatch(request(abort.signal)).then((res) => res, (err: unknown) => err)
      void done.then((x) => { settled = x })
      // a has failed and the backoff's timer is set
      await clock.advance(0)
      expect(clock.pending).toBe(1)
      await clock.advance(24)
      expect(calls.map((c) => c.peer)).toEqual(['a'])
      expect(settled).toBeUndefined()
      if (abortMidWait) {
        const reason = new LlmeshError('INVALID_REQUEST', 'client gone')
        abort.abort(reason)
        expect(await done).toBe(reason)
        expect(calls.map((c) => c.peer)).toEqual(['a'])
      } else {
        await clock.advance(1)
        const res = await done as Awaited<ReturnType<Router['dispatch']>>
        for await (const _ of res.body) { /* drain */ }
        expect(calls.map((c) => c.peer)).toEqual(['a', 'b'])
        expect(res.target.reasons).toContain('tried a: connect')
      }
      expect(r.claims.toRecord()).toEqual({})
    }
  })

  it('ends a request aborted while forwarding with the client\'s reason, held against no host', async () => {
    const abort = new Abort()
    const reason = new LlmeshError('INVALID_REQUEST', 'client gone')
    const r = new Router({
      view: viewOf(() => [node(SELF, 0), node('a'), node('b')], () => [], () => new Set(['a', 'b'])),
      ...forwarder(async () => {
        abort.abort(reason)
        throw new LlmeshError('PEER_UNREACHABLE', 'stream aborted')
      }),
      defaultStrategy: 'round-robin',
      logger: silent,
      random: () => 0,
      clock: new FakeClock()
    })
    await expect(r.dispatch(request(abort.signal))).rejects.toBe(reason)
    expect(r.claims.toRecord()).toEqual({})
    expect(r.health.circuits(Date.now()).size).toBe(0)
  })
})

describe('a client\'s bad request is not the host\'s failure', () => {
  for (const code of ['INVALID_REQUEST', 'UNAUTHORIZED', 'FORBIDDEN', 'MODEL_NOT_FOUND'] as const) {
    it(`any number of ${code} answers leave the host's circuit closed`, async () => {
      let bad = true
      const r = router(['a'], { a: () => bad ? new LlmeshError(code, 'the request\'s own fault') : ok() }, [])
      for (let n = 0; n < 12; n++) await expect(dispatch(r)).rejects.toMatchObject({ code })
      expect(r.health.circuits(Date.now()).get('a') ?? 'closed').toBe('closed')
      bad = false
      expect((await dispatch(r)).peer).toBe('a')
    })
  }
})
