import { describe, expect, it } from 'vitest'
import { Abort, abortSignalOf } from './abort.js'

describe('Abort', () => {
  it('runs each listener once, in order, with the reason set; later aborts change nothing', () => {
    const a = new Abort()
    const seen: string[] = []
    a.addEventListener('abort', () => { seen.push(`first ${String(a.reason)}`) })
    a.addEventListener('abort', () => { seen.push('second') })
    expect(a.aborted).toBe(false)
    a.abort('client went away')
    a.abort('again')
    expect(a.aborted).toBe(true)
    expect(a.reason).toBe('client went away')
    expect(seen).toEqual(['first client went away', 'second'])
  })

  it('never runs a listener removed before, or added after, the abort; gives an AbortError without a reason', () => {
    const a = new Abort()
    let calls = 0
    const listener = (): void => { calls++ }
    a.addEventListener('abort', listener)
    a.removeEventListener('abort', listener)
    a.removeEventListener('abort', listener)
    a.abort()
    a.addEventListener('abort', listener)
    expect(calls).toBe(0)
    expect(a.reason).toBeInstanceOf(DOMException)
    expect((a.reason as DOMException).name).toBe('AbortError')
  })

  it('runs every listener when one throws, then throws the first error', () => {
    const a = new Abort()
    let after = 0
    a.addEventListener('abort', () => { throw new Error('listener failed') })
    a.addEventListener('abort', () => { after++ })
    expect(() => { a.abort() }).toThrow('listener failed')
    expect(after).toBe(1)
  })
})

describe('abortSignalOf', () => {
  it('passes an AbortSignal as it is, and makes one that follows an Abort until released', () => {
    const real = new AbortController().signal
    expect(abortSignalOf(real).signal).toBe(real)

    const a = new Abort()
    const { signal } = abortSignalOf(a)
    expect(signal.aborted).toBe(false)
    a.abort(new Error('gone'))
    expect(signal.aborted).toBe(true)
    expect((signal.reason as Error).message).toBe('gone')

    const b = new Abort()
    const followed = abortSignalOf(b)
    followed.release()
    b.abort()
    expect(followed.signal.aborted).toBe(false)

    const c = new Abort()
    c.abort('already')
    expect(abortSignalOf(c).signal.reason).toBe('already')
  })
})
