import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { LlmeshError } from '@llmesh/protocol'
import { mulberry32 } from '@llmesh/testkit'
import { restartDelay } from './base-runner.js'
import { parsePrometheus } from './llama-server.js'
import { watchStalls } from './stall.js'

async function * chunks (delaysMs: number[], signal?: AbortSignal): AsyncGenerator<number> {
  for (const [i, ms] of delaysMs.entries()) {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(resolve, ms)
      signal?.addEventListener('abort', () => { clearTimeout(t); reject(signal.reason) }, { once: true })
    })
    yield i
  }
}

/** Starts `body`, moves fake time on by `ms` (running the timers that fall due), then gives its result. */
async function within<T> (ms: number, body: () => Promise<T>): Promise<T> {
  const running = body()
  await vi.advanceTimersByTimeAsync(ms)
  return await running
}

describe('stall watch', () => {
  beforeEach(() => { vi.useFakeTimers() })
  afterEach(() => { vi.useRealTimers() })

  it('passes a lively stream through and reports completion', async () => {
    const seen: number[] = []
    let completed = false
    let settled = 0
    await within(10, async () => {
      for await (const c of watchStalls(chunks([1, 1, 1]), { firstChunkMs: 1000, gapMs: 1000, label: 'r', abort: () => {}, onComplete: () => { completed = true }, onSettled: () => { settled++ } })) seen.push(c)
    })
    expect(seen).toEqual([0, 1, 2])
    expect(completed).toBe(true)
    expect(settled).toBe(1)
  })

  it('aborts the upstream and throws STALLED when no chunk comes in time', async () => {
    const ac = new AbortController()
    let stalls = 0
    const seen: number[] = []
    const err = await within(100, async () => {
      try {
        for await (const c of watchStalls(chunks([1, 10_000], ac.signal), { firstChunkMs: 1000, gapMs: 50, label: 'runner x', abort: (r) => { ac.abort(r) }, onStall: () => { stalls++ } })) seen.push(c)
      } catch (e) {
        return e
      }
      return undefined
    })
    expect(seen).toEqual([0])
    expect(err).toBeInstanceOf(LlmeshError)
    expect((err as LlmeshError).code).toBe('STALLED')
    expect((err as LlmeshError).status).toBe(504)
    expect((err as LlmeshError).message).toBe('runner x produced no token for 50 ms; the request was aborted')
    expect(ac.signal.aborted).toBe(true)
    expect(stalls).toBe(1)
  })

  it('does not count a slow reader as a stall: only the wait for the upstream counts', async () => {
    const ac = new AbortController()
    const seen: number[] = []
    await within(1000, async () => {
      for await (const c of watchStalls(chunks([1, 1, 1], ac.signal), { firstChunkMs: 50, gapMs: 50, label: 'r', abort: (r) => { ac.abort(r) } })) {
        seen.push(c)
        await new Promise((resolve) => setTimeout(resolve, 150)) // the client applies backpressure
      }
    })
    expect(seen).toEqual([0, 1, 2])
    expect(ac.signal.aborted).toBe(false)
  })

  it('aborts the upstream when the reader stops early', async () => {
    const ac = new AbortController()
    await within(10, async () => {
      for await (const _ of watchStalls(chunks([1, 1, 1], ac.signal), { firstChunkMs: 1000, gapMs: 1000, label: 'r', abort: (r) => { ac.abort(r) } })) break
    })
    expect(ac.signal.aborted).toBe(true)
  })
})

describe('restart backoff', () => {
  it('grows exponentially, is capped, and jitters around the base', () => {
    const mid = (): number => 0.5
    expect([0, 1, 2, 3, 10].map((a) => restartDelay(a, { minDelayMs: 100, maxDelayMs: 1000, factor: 2 }, mid))).toEqual([100, 200, 400, 800, 1000])
    expect(restartDelay(0, { minDelayMs: 100, jitter: 0.2 }, () => 0)).toBe(80)
    expect(restartDelay(0, { minDelayMs: 100, jitter: 0.2 }, () => 1)).toBe(120)
  })

  it('keeps the delays of the backoff it had before the one in @llmesh/kit (same seeded sequence)', () => {
    // recorded from the runners' own backoffDelay before it was replaced by kit's
    const random = mulberry32(17)
    expect(Array.from({ length: 12 }, (_, a) => restartDelay(a, {}, random)))
      .toEqual([535, 877, 2025, 3465, 6681, 17669, 29211, 61115, 54162, 64401, 67118, 55319])
    const other = mulberry32(17)
    expect(Array.from({ length: 8 }, (_, a) => restartDelay(a, { minDelayMs: 100, maxDelayMs: 1000, factor: 3, jitter: 0.5 }, other)))
      .toEqual([118, 208, 928, 665, 588, 1261, 782, 1046])
  })
})

describe('llama-server /metrics', () => {
  it('parses Prometheus text', () => {
    expect(parsePrometheus('# HELP x y\n# TYPE x counter\nllamacpp:prompt_tokens_total 42\nllamacpp:requests_processing 1\nfoo{a="b"} 2.5\n')).toEqual({
      'llamacpp:prompt_tokens_total': 42, 'llamacpp:requests_processing': 1, 'foo{a="b"}': 2.5
    })
  })
})
