import { describe, expect, it } from 'vitest'
import { withFinally } from './iter.js'

async function * three (): AsyncGenerator<number> { yield 1; yield 2; yield 3 }
async function * failing (): AsyncGenerator<number> { yield 1; throw new Error('boom') }

describe('withFinally', () => {
  it('runs onDone once when the source is read to the end', async () => {
    let n = 0
    const out: number[] = []
    for await (const x of withFinally(three(), () => { n++ })) out.push(x)
    expect(out).toEqual([1, 2, 3])
    expect(n).toBe(1)
  })

  it('runs onDone when the source throws, and when the consumer stops early', async () => {
    let n = 0
    await expect((async () => { for await (const _ of withFinally(failing(), () => { n++ })) { /* drain */ } })()).rejects.toThrow('boom')
    for await (const _ of withFinally(three(), () => { n++ })) break
    expect(n).toBe(2)
  })

  it('runs onDone when abandoned before the first read', async () => {
    let n = 0
    const it = withFinally(three(), () => { n++ })
    await it.return?.()
    await it.return?.()
    expect(n).toBe(1)
  })
})
