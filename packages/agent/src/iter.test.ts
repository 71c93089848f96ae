import { describe, expect, it } from 'vitest'
import { tap } from './iter.js'

async function * three (): AsyncGenerator<number> { yield 1; yield 2; yield 3 }
async function * failing (): AsyncGenerator<number> { yield 1; throw new Error('boom') }

describe('tap', () => {
  it('passes every chunk through the hook and runs complete and done once at the end', async () => {
    const seen: number[] = []
    const out: number[] = []
    const calls: string[] = []
    for await (const x of tap(three(), { chunk: (c) => { seen.push(c) }, complete: () => { calls.push('complete') }, done: () => { calls.push('done') } })) out.push(x)
    expect(out).toEqual([1, 2, 3])
    expect(seen).toEqual([1, 2, 3])
    expect(calls).toEqual(['complete', 'done'])
  })

  it('maps a failure through fail and runs done; done also runs when the consumer stops early', async () => {
    let n = 0
    const failed: string[] = []
    await expect((async () => {
      for await (const _ of tap(failing(), { fail: (err) => { failed.push((err as Error).message); return new Error('mapped') }, done: () => { n++ } })) { /* drain */ }
    })()).rejects.toThrow('mapped')
    expect(failed).toEqual(['boom'])
    let completed = false
    for await (const _ of tap(three(), { complete: () => { completed = true }, done: () => { n++ } })) break
    expect(n).toBe(2)
    expect(completed).toBe(false)
  })

  it('runs done once when abandoned before the first read', async () => {
    let n = 0
    const it = tap(three(), { done: () => { n++ } })
    await it.return?.()
    await it.return?.()
    expect(n).toBe(1)
  })

  it('hands out a first result read before, then goes on with the same iterator', async () => {
    const source = three()
    const first = await source.next()
    const out: number[] = []
    const seen: number[] = []
    for await (const x of tap(source, { chunk: (c) => { seen.push(c) } }, first)) out.push(x)
    expect(out).toEqual([1, 2, 3])
    expect(seen).toEqual([1, 2, 3])
  })
})
