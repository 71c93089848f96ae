import { describe, expect, it } from 'vitest'
import { LlmeshError } from '@llmesh/protocol'
import { FakeClock } from '@llmesh/testkit'
import { RequestEvents, type RequestEvent } from './request-events.js'
import type { DispatchRequest, RoutedResponse } from './router.js'

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)

function setup (): { clock: FakeClock, events: RequestEvents, seen: RequestEvent[] } {
  const clock = new FakeClock(1_000)
  const events = new RequestEvents({ clock, self: () => 'entry', defaultStrategy: 'performance' })
  const seen: RequestEvent[] = []
  events.on((e) => { seen.push(e) })
  return { clock, events, seen }
}

const req = (signal: AbortSignal = new AbortController().signal): DispatchRequest =>
  ({ id: 'r1', path: '/v1/chat/completions', model: 'm', body: {}, priority: 5, deadline: Infinity, signal })

function response (clock: FakeClock, chunks: Array<string | Error>): RoutedResponse {
  async function * body (): AsyncGenerator<Uint8Array> {
    for (const c of chunks) {
      clock.advance(10)
      if (c instanceof Error) throw c
      yield enc(c)
    }
  }
  return { status: 200, contentType: 'text/event-stream', body: body(), target: { peerId: 'host-b', runnerId: 'x', local: false, reasons: ['cache=hit'] }, attempts: 2 }
}

async function drain (res: RoutedResponse): Promise<string> {
  let out = ''
  for await (const c of res.body) out += new TextDecoder().decode(c)
  return out
}

describe('RequestEvents', () => {
  it('tells a served request once, at its end, with its time to first chunk and its route', async () => {
    const { clock, events, seen } = setup()
    const res = await events.observe(req(), async () => { clock.advance(5); return response(clock, ['a', 'b']) })
    expect(seen).toHaveLength(0)
    expect(await drain(res)).toBe('ab')
    expect(seen).toEqual([{ id: 'r1', model: 'm', strategy: 'performance', entry: 'entry', target: 'host-b', local: false, outcome: 'ok', ttftMs: 5, durationMs: 25, attempts: 2, reasons: ['cache=hit'], at: 1_025 }])
  })

  it('tells a failed dispatch and a stream that breaks with their codes, and a client gone as aborted', async () => {
    const { clock, events, seen } = setup()
    await expect(events.observe(req(), async () => { throw new LlmeshError('NO_CAPACITY', 'none') })).rejects.toThrow('none')
    const broken = await events.observe(req(), async () => response(clock, ['a', new LlmeshError('STALLED', 'no token')]))
    await expect(drain(broken)).rejects.toThrow('no token')
    const left = await events.observe(req(), async () => response(clock, ['a', 'b', 'c']))
    for await (const _ of left.body) break
    expect(seen.map((e) => [e.outcome, e.code])).toEqual([['error', 'NO_CAPACITY'], ['error', 'STALLED'], ['aborted', undefined]])
  })

  it('leaves a request unwrapped without listeners, and a listener that throws breaks nothing', async () => {
    const clock = new FakeClock(0)
    const events = new RequestEvents({ clock, self: () => 'entry', defaultStrategy: 'performance' })
    const res = response(clock, ['a'])
    expect(await events.observe(req(), async () => res)).toBe(res)
    events.on(() => { throw new Error('listener') })
    expect(await drain(await events.observe(req(), async () => response(clock, ['x'])))).toBe('x')
  })
})
