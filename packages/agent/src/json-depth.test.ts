import { describe, expect, it } from 'vitest'
import { LlmeshError } from '@llmesh/protocol'
import { MAX_JSON_DEPTH } from './constants.js'
import { assertJsonDepth, jsonDepth } from './json-depth.js'

/** `[[[...'x'...]]]` n levels deep, parsed from text (JSON.parse itself takes any depth). */
const nested = (n: number): unknown => JSON.parse('['.repeat(n) + '"x"' + ']'.repeat(n))

describe('jsonDepth', () => {
  it('measures arrays and objects, scalars count 0', () => {
    expect(jsonDepth('x')).toBe(0)
    expect(jsonDepth(null)).toBe(0)
    expect(jsonDepth([])).toBe(1)
    expect(jsonDepth({ a: [{ b: 1 }], c: 'd' })).toBe(3)
    expect(jsonDepth(nested(10))).toBe(10)
  })

  it('walks a body far deeper than the stack allows, and stops at the limit', () => {
    const deep = nested(200_000)
    expect(() => JSON.stringify(deep)).toThrow(RangeError)
    expect(jsonDepth(deep)).toBe(200_000)
    expect(jsonDepth(deep, 64)).toBe(65)
  })

  it('refuses a body over MAX_JSON_DEPTH with INVALID_REQUEST (400), takes one at the limit', () => {
    const body = (n: number): unknown => ({ model: 'm', messages: [{ role: 'user', content: nested(n) }] })
    // the body adds 3 levels: the object, messages, the message
    expect(() => { assertJsonDepth(body(MAX_JSON_DEPTH - 3)) }).not.toThrow()
    let err: unknown
    try { assertJsonDepth(body(MAX_JSON_DEPTH - 2)) } catch (e) { err = e }
    expect(err).toBeInstanceOf(LlmeshError)
    expect((err as LlmeshError).code).toBe('INVALID_REQUEST')
    expect((err as LlmeshError).status).toBe(400)
  })
})
