import { describe, expect, it } from 'vitest'
import { FakeClock } from './clock.js'
import { mulberry32 } from './random.js'

describe('FakeClock', () => {
  it('runs due timers in time order at their time, and cleared ones never', async () => {
    const clock = new FakeClock(1000)
    const seen: Array<[string, number]> = []
    clock.setTimeout(() => seen.push(['b', clock.now()]), 20)
    clock.setTimeout(() => seen.push(['a', clock.now()]), 10)
    const c = clock.setTimeout(() => seen.push(['c', clock.now()]), 15)
    clock.clearTimeout(c)
    await clock.advance(15)
    expect(seen).toEqual([['a', 1010]])
    expect(clock.now()).toBe(1015)
    await clock.advance(100)
    expect(seen).toEqual([['a', 1010], ['b', 1020]])
    expect(clock.pending).toBe(0)
  })

  it('runs a timer set by a timer within the same advance, after the promise chain it started', async () => {
    const clock = new FakeClock(0)
    const seen: number[] = []
    clock.setTimeout(() => {
      void Promise.resolve().then(() => { clock.setTimeout(() => seen.push(clock.now()), 5) })
    }, 5)
    await clock.advance(10)
    expect(seen).toEqual([10])
  })
})

describe('mulberry32', () => {
  it('repeats for a seed and stays in [0, 1)', () => {
    const a = mulberry32(7)
    const b = mulberry32(7)
    const xs = Array.from({ length: 1000 }, () => a())
    expect(xs).toEqual(Array.from({ length: 1000 }, () => b()))
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true)
    expect(new Set(xs).size).toBe(1000)
  })
})
