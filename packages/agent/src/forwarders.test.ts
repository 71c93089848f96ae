import { describe, expect, it } from 'vitest'
import { pino } from 'pino'
import { FakeClock } from '@llmesh/testkit'
import { LlmeshError, QueueFullError, type InferRequest } from '@llmesh/protocol'
import type { InferResponse, InferTimeouts } from '@llmesh/mesh'
import type { Runner, RunnerResponse } from '@llmesh/runners'
import { LocalForwarder, PeerForwarder, type ForwardOptions } from './forwarders.js'
import { LocalServing } from './serving.js'

async function * chunks (...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield new TextEncoder().encode(p)
}

async function text (body: AsyncIterable<Uint8Array>): Promise<string> {
  let out = ''
  for await (const c of body) out += new TextDecoder().decode(c)
  return out
}

const opts = (clock: FakeClock, over: Partial<ForwardOptions> = {}): ForwardOptions =>
  ({ id: 'q', path: '/v1/chat/completions', model: 'm', body: {}, priority: 5, mayQueue: false, deadline: clock.now() + 5000, signal: new AbortController().signal, ...over })

/** A PeerForwarder over a mesh whose peer answers with `head` and `body`; records what it was sent. */
function peer (clock: FakeClock, status: number, ...body: string[]): { f: PeerForwarder, sent: Array<{ request: InferRequest, timeouts?: InferTimeouts }> } {
  const sent: Array<{ request: InferRequest, timeouts?: InferTimeouts }> = []
  const f = new PeerForwarder({
    mesh: {
      infer: async (_peerId, request, _signal, timeouts): Promise<InferResponse> => {
        sent.push({ request, ...(timeouts != null ? { timeouts } : {}) })
        return { head: { status, contentType: 'application/json', runnerId: 'b-r0' }, body: chunks(...body) }
      }
    },
    limits: { headTimeoutMs: 100, frameGapMs: 200 },
    firstTokenTimeoutMs: 1000,
    clock
  })
  return { f, sent }
}

describe('PeerForwarder', () => {
  it('asks for the chosen runner with the deadline relative, and waits what an honest host may take', async () => {
    const clock = new FakeClock()
    const { f, sent } = peer(clock, 200, 'ok')
    const res = await f.forward({ peerId: 'b', runnerId: 'b-r0' }, opts(clock, { body: { stream: true } }))
    expect(res).toMatchObject({ status: 200, runnerId: 'b-r0' })
    expect(await text(res.body)).toBe('ok')
    await f.forward({ peerId: 'b', runnerId: 'b-r0' }, opts(clock, { mayQueue: true, body: { stream: true } }))
    expect(sent.map((s) => s.request)).toMatchObject([{ runnerId: 'b-r0', deadlineMs: 5000, mayQueue: false }, { deadlineMs: 5000, mayQueue: true }])
    // the first token: the runner's bound and one silence bound, and the queue wait when it may queue
    expect(sent.map((s) => s.timeouts)).toEqual([
      { headMs: 100, gapMs: 200, firstTokenMs: 1000 + 100 },
      { headMs: 100, gapMs: 200, firstTokenMs: 5000 + 1000 + 100 }
    ])
  })

  it('reads a runner\'s 5xx head into RUNNER_FAILED, and passes 501 (not supported) on', async () => {
    const clock = new FakeClock()
    await expect(peer(clock, 500, '{"error":{"message":"boom"}}').f.forward({ peerId: 'b', runnerId: 'r' }, opts(clock)))
      .rejects.toMatchObject({ code: 'RUNNER_FAILED', message: 'runner answered 500: boom' })
    expect((await peer(clock, 501, 'no').f.forward({ peerId: 'b', runnerId: 'r' }, opts(clock))).status).toBe(501)
  })

  it('reads an older peer\'s 429 head as QUEUE_FULL with the Retry-After of its body', async () => {
    const clock = new FakeClock()
    const err = await peer(clock, 429, '{"error":{"message":"queue full"},', '"retry_after_sec":3}').f.forward({ peerId: 'b', runnerId: 'r' }, opts(clock)).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(QueueFullError)
    expect(err).toMatchObject({ message: 'queue full', retryAfterSec: 3 })
    const bare = await peer(clock, 429).f.forward({ peerId: 'b', runnerId: 'r' }, opts(clock)).then(() => undefined, (e: unknown) => e)
    expect(bare).toMatchObject({ code: 'QUEUE_FULL', message: 'queue full', retryAfterSec: 1 })
  })
})

describe('LocalForwarder', () => {
  function runner (answer: () => RunnerResponse): Runner {
    return {
      id: 'r0',
      model: 'm',
      state: 'ready',
      info: () => ({ id: 'r0', kind: 'llama-server', model: 'm', state: 'ready', slots: 1 }),
      infer: async () => answer()
    } as unknown as Runner
  }

  function local (r: Runner | undefined, clock: FakeClock, queueCapacity = 4): { f: LocalForwarder, serving: LocalServing } {
    const serving = new LocalServing({ logger: pino({ level: 'silent' }), clock, queueCapacity })
    return { f: new LocalForwarder({ serving, runners: { find: (model) => model === 'm' ? r : undefined, has: () => false, ensure: async () => {} } }), serving }
  }

  it('starts a model this host has on disk but does not run, then serves it; the wait counts against the deadline it is given', async () => {
    const clock = new FakeClock()
    const serving = new LocalServing({ logger: pino({ level: 'silent' }), clock, queueCapacity: 4 })
    const r = runner(() => ({ status: 200, contentType: 'text/plain', body: chunks('warm now') }))
    let started = false
    const asked: unknown[] = []
    const f = new LocalForwarder({
      serving,
      runners: {
        find: (model) => model === 'cold' && started ? r : undefined,
        has: (model) => model === 'cold',
        ensure: async (model, o) => { asked.push({ model, deadline: o.deadline, loadAnyway: o.loadAnyway, reason: o.reason }); started = true }
      }
    })
    const o = opts(clock, { model: 'cold', loadAnyway: true })
    const res = await f.forward({ peerId: 'self', runnerId: '', cold: true }, o)
    expect(await text(res.body)).toBe('warm now')
    expect(asked).toEqual([{ model: 'cold', deadline: o.deadline, loadAnyway: true, reason: 'request' }])
    // a model neither run nor on disk here is not started
    await expect(f.forward({ peerId: 'self', runnerId: '' }, opts(clock, { model: 'elsewhere' }))).rejects.toMatchObject({ code: 'NO_CAPACITY' })
    expect(asked).toHaveLength(1)
  })

  it('serves on a ready runner behind admission, and says NO_CAPACITY when there is none', async () => {
    const clock = new FakeClock()
    const { f, serving } = local(runner(() => ({ status: 200, contentType: 'text/plain', body: chunks('hi') })), clock)
    const res = await f.forward({ peerId: 'self', runnerId: 'r0' }, opts(clock))
    expect(res).toMatchObject({ status: 200, runnerId: 'r0' })
    expect(serving.counters()[0]).toMatchObject({ busy: 1 })
    expect(await text(res.body)).toBe('hi')
    expect(serving.counters()[0]).toMatchObject({ busy: 0, granted: 1 })
    await expect(f.forward({ peerId: 'self', runnerId: 'x' }, opts(clock, { model: 'other' }))).rejects.toMatchObject({ code: 'NO_CAPACITY' })
  })

  it('reads the body\'s token rate on its way through admission and hands it on with the answer', async () => {
    const clock = new FakeClock()
    const { f, serving } = local(runner(() => ({ status: 200, contentType: 'application/json', body: chunks('{"ok":true,', '"timings":{"predicted_per_second":77}}') })), clock)
    const res = await f.forward({ peerId: 'self', runnerId: 'r0' }, opts(clock))
    expect(res.rate?.tokensPerSec).toBeUndefined()
    await text(res.body)
    expect(res.rate?.tokensPerSec).toBe(77)
    expect(serving.figures().tokensPerSec).toBe(77)
  })

  it('has the runners ranked by their admission: busy and queued per slot', async () => {
    const clock = new FakeClock()
    let release!: () => void
    const held = new Promise<void>((resolve) => { release = resolve })
    async function * slow (): AsyncGenerator<Uint8Array> { await held; yield new Uint8Array(1) }
    const r = runner(() => ({ status: 200, contentType: 'text/plain', body: slow() }))
    const serving = new LocalServing({ logger: pino({ level: 'silent' }), clock, queueCapacity: 4 })
    let load: ((runner: Runner) => number) | undefined
    const f = new LocalForwarder({ serving, runners: { find: (_model, _preferred, l) => { load = l; return r }, has: () => true, ensure: async () => {} } })
    const first = await f.forward({ peerId: 'self', runnerId: 'r0' }, opts(clock))
    expect(load?.(r)).toBe(1)
    const queued = f.forward({ peerId: 'self', runnerId: 'r0' }, opts(clock, { mayQueue: true }))
    await Promise.resolve()
    expect(load?.(r)).toBe(2)
    release()
    await text(first.body)
    await text((await queued).body)
    expect(load?.(r)).toBe(0)
  })

  it('gives a runner\'s 5xx as RUNNER_FAILED to the router and frees the slot; serve() passes it on as it is', async () => {
    const clock = new FakeClock()
    const { f, serving } = local(runner(() => ({ status: 503, contentType: 'application/json', body: chunks('{"error":"loading"}') })), clock)
    await expect(f.forward({ peerId: 'self', runnerId: 'r0' }, opts(clock))).rejects.toMatchObject({ code: 'RUNNER_FAILED', message: 'runner answered 503: loading' })
    expect(serving.counters()[0]).toMatchObject({ busy: 0 })
    const res = await f.serve('m', undefined, '/v1/chat/completions', {}, { id: 'peer:1', priority: 5, mayQueue: false, deadline: clock.now() + 1000, signal: new AbortController().signal })
    expect(res.status).toBe(503)
    expect(await text(res.body)).toBe('{"error":"loading"}')
  })

  it('answers BUSY with the host\'s figures, and QUEUE_FULL with a Retry-After when the queue is full', async () => {
    const clock = new FakeClock()
    let release!: () => void
    const held = new Promise<void>((resolve) => { release = resolve })
    async function * slow (): AsyncGenerator<Uint8Array> { await held; yield new Uint8Array(1) }
    const { f } = local(runner(() => ({ status: 200, contentType: 'text/plain', body: slow() })), clock, 0)
    const first = await f.forward({ peerId: 'self', runnerId: 'r0' }, opts(clock))
    await expect(f.forward({ peerId: 'self', runnerId: 'r0' }, opts(clock))).rejects.toMatchObject({ code: 'BUSY', admission: { slotsBusy: 1, slotsTotal: 1, queueDepth: 0 } })
    const full = await f.forward({ peerId: 'self', runnerId: 'r0' }, opts(clock, { mayQueue: true })).then(() => undefined, (e: unknown) => e)
    expect(full).toBeInstanceOf(QueueFullError)
    expect((full as QueueFullError).retryAfterSec).toBeGreaterThanOrEqual(1)
    release()
    await text(first.body)
    expect(full).toBeInstanceOf(LlmeshError)
  })
})
