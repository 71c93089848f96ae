import { describe, expect, it } from 'vitest'
import { prefixKey } from './prefix-key.js'

const system = { role: 'system', content: 'You are terse.' }
const user = { role: 'user', content: 'Name three rivers.' }

describe('prefixKey', () => {
  it('is the same for every turn of one conversation', () => {
    const turn1 = [system, user]
    const turn2 = [...turn1, { role: 'assistant', content: 'Nile, Amazon, Rhine.' }, { role: 'user', content: 'Two more.' }]
    const turn3 = [...turn2, { role: 'assistant', content: 'Volga, Danube.' }, { role: 'user', content: 'Thanks.' }]
    const k = prefixKey(turn1)
    expect(k).toMatch(/^[0-9a-f]{16}$/)
    expect(prefixKey(turn2)).toBe(k)
    expect(prefixKey(turn3)).toBe(k)
  })

  it('differs when the system prompt or the first user message differs', () => {
    const k = prefixKey([system, user])
    expect(prefixKey([{ role: 'system', content: 'You are verbose.' }, user])).not.toBe(k)
    expect(prefixKey([system, { role: 'user', content: 'Name three lakes.' }])).not.toBe(k)
    expect(prefixKey([user])).not.toBe(k)
  })

  it('treats string content and text parts alike, and other parts by sorted JSON', () => {
    const parts = [system, { role: 'user', content: [{ type: 'text', text: 'Name three rivers.' }] }]
    expect(prefixKey(parts)).toBe(prefixKey([system, user]))
    const a = prefixKey([{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'u', detail: 'low' } }] }])
    const b = prefixKey([{ role: 'user', content: [{ image_url: { detail: 'low', url: 'u' }, type: 'image_url' }] }])
    expect(a).toBe(b)
  })

  it('cannot be imitated by moving text between the system and the user message', () => {
    const a = prefixKey([{ role: 'system', content: 'ab' }, { role: 'user', content: 'c' }])
    const b = prefixKey([{ role: 'system', content: 'a' }, { role: 'user', content: 'bc' }])
    expect(a).not.toBe(b)
  })

  it('accepts developer as the system role and answers undefined with nothing to key on', () => {
    expect(prefixKey([{ role: 'developer', content: 'You are terse.' }, user])).toBe(prefixKey([system, user]))
    expect(prefixKey([])).toBeUndefined()
    expect(prefixKey([{ role: 'assistant', content: 'hi' }])).toBeUndefined()
    expect(prefixKey(undefined)).toBeUndefined()
  })

  it('keys a raw prompt by its beginning', () => {
    const head = 'x'.repeat(1024)
    expect(prefixKey(`${head}turn 1`)).toBe(prefixKey(`${head}turn 2, longer`))
    expect(prefixKey('short a')).not.toBe(prefixKey('short b'))
    expect(prefixKey('')).toBeUndefined()
  })
})
