import { describe, expect, it } from 'vitest'
import { LlmeshError } from '@llmesh/protocol'
import { backoffDelay } from './backoff.js'
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

describe('stall watch', () => {
  it('passes a lively stream through and reports completion', async () => {
    const seen: number[] = []
    let completed = false
    let settled = 0
    for await (const c of watchStalls(chunks([1, 1, 1]), { firstChunkMs: 1000, gapMs: 1000, label: 'r', abort: () => {}, onComplete: () => { completed = true }, onSettled: () => { settled++ } })) seen.push(c)
    expect(seen).toEqual([0, 1, 2])
    expect(completed).toBe(true)
    expect(settled).toBe(1)
  })

  it('aborts the upstream and throws STALLED when no chunk comes in time', async () => {
    const ac = new AbortController()
    let stalls = 0
    const seen: number[] = []
    const err = await (async () => {
      try {
        for await (const c of watchStalls(chunks([1, 10_000], ac.signal), { firstChunkMs: 1000, gapMs: 50, label: 'runner x', abort: (r) => { ac.abort(r) }, onStall: () => { stalls++ } })) seen.push(c)
      } catch (e) {
        return e
      }
      return undefined
    })()
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
    for await (const c of watchStalls(chunks([1, 1, 1], ac.signal), { firstChunkMs: 50, gapMs: 50, label: 'r', abort: (r) => { ac.abort(r) } })) {
      seen.push(c)
      await new Promise((resolve) => setTimeout(resolve, 150)) // the client applies backpressure
    }
    expect(seen).toEqual([0, 1, 2])
    expect(ac.signal.aborted).toBe(false)
  })

  it('aborts the upstream when the reader stops early', async () => {
    const ac = new AbortController()
    for await (const _ of watchStalls(chunks([1, 1, 1], ac.signal), { firstChunkMs: 1000, gapMs: 1000, label: 'r', abort: (r) => { ac.abort(r) } })) break
    expect(ac.signal.aborted).toBe(true)
  })
})

describe('restart backoff', () => {
  it('grows exponentially, is capped, and jitters around the base', () => {
    const mid = (): number => 0.5
    expect([0, 1, 2, 3, 10].map((a) => backoffDelay(a, { minDelayMs: 100, maxDelayMs: 1000, factor: 2 }, mid))).toEqual([100, 200, 400, 800, 1000])
    expect(backoffDelay(0, { minDelayMs: 100, jitter: 0.2 }, () => 0)).toBe(80)
    expect(backoffDelay(0, { minDelayMs: 100, jitter: 0.2 }, () => 1)).toBe(120)
  })
})

describe('llama-server /metrics', () => {
  it('parses Prometheus text', () => {
    expect(parsePrometheus('# HELP x y\n# TYPE x counter\nllamacpp:prompt_tokens_total 42\nllamacpp:requests_processing 1\nfoo{a="b"} 2.5\n')).toEqual({
      'llamacpp:prompt_tokens_total': 42, 'llamacpp:requests_processing': 1, 'foo{a="b"}': 2.5
    })
  })
})
