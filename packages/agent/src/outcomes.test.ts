import { describe, expect, it } from 'vitest'
import { LlmeshError } from '@llmesh/protocol'
import { failureOf, TokenRateScanner } from './outcomes.js'

describe('TokenRateScanner', () => {
  it('reads predicted_per_second from the chunk that holds it, as bytes or text', () => {
    const r = new TokenRateScanner()
    r.scan(new TextEncoder().encode('data: {"choices":[{"delta":{"content":"a"}}]}\n\n'))
    expect(r.tokensPerSec).toBeUndefined()
    r.scan(new TextEncoder().encode('data: {"timings":{"predicted_n":9,"predicted_per_second":1234.5}}\n\n').subarray(6))
    expect(r.tokensPerSec).toBe(1234.5)
    r.scan('{"timings":{"predicted_per_second": 99}}')
    expect(r.tokensPerSec).toBe(99)
    r.scan('{"timings":{"predicted_per_second": "x"}}')
    expect(r.tokensPerSec).toBe(99)
  })
})

describe('failureOf', () => {
  it('maps error codes to the scheduler\'s failure kinds, an aborted request to aborted', () => {
    expect(failureOf(new LlmeshError('BUSY', 'b'))).toBe('busy')
    expect(failureOf(new LlmeshError('STALLED', 's'))).toBe('stall')
    expect(failureOf(new Error('econnrefused'))).toBe('connect')
    const ac = new AbortController()
    ac.abort()
    expect(failureOf(new LlmeshError('BUSY', 'b'), ac.signal)).toBe('aborted')
  })
})
