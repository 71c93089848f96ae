import { describe, expect, it } from 'vitest'
import { FakeClock } from '@llmesh/testkit'
import { AT_ONCE, Coalescer } from './coalescer.js'
import type { Sink } from './sink.js'

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const dec = (b: Uint8Array): string => new TextDecoder().decode(b)

/** A sink that records its batches; `full` makes writes ask to wait until `drain()`. */
class RecordingSink implements Sink {
  batches: string[] = []
  full = false
  private waiting: Array<(ok: boolean) => void> = []

  write (batch: Uint8Array): boolean {
    this.batches.push(dec(batch))
    return !this.full
  }

  async drained (): Promise<boolean> {
    if (!this.full) return true
    return await new Promise<boolean>((resolve) => this.waiting.push(resolve))
  }

  drain (ok = true): void {
    this.full = false
    for (const w of this.waiting.splice(0)) w(ok)
  }
}

function setup (init: ConstructorParameters<typeof Coalescer>[1] = {}): { clock: FakeClock, sink: RecordingSink, c: Coalescer } {
  const clock = new FakeClock()
  const sink = new RecordingSink()
  return { clock, sink, c: new Coalescer(sink, { windowMs: 8, soon: AT_ONCE, clock, ...init }) }
}

describe('Coalescer', () => {
  it('passes the first chunk at once and gathers the ones within the window into one batch at its end', async () => {
    const { clock, sink, c } = setup()
    c.push(enc('t0 '))
    expect(sink.batches).toEqual(['t0 '])
    await clock.advance(2)
    c.push(enc('t1 '))
    expect(c.holding).toBe(true)
    await clock.advance(3)
    c.push(enc('t2 '))
    expect(sink.batches).toEqual(['t0 '])
    // the window runs from the last batch: 8 ms after t0
    await clock.advance(2)
    expect(sink.batches).toEqual(['t0 '])
    await clock.advance(1)
    expect(sink.batches).toEqual(['t0 ', 't1 t2 '])
    expect(c.holding).toBe(false)
    expect(c.flushes).toBe(2)
    expect(clock.pending).toBe(0)
  })

  it('passes a stream slower than the window chunk by chunk, each at once', async () => {
    const { clock, sink, c } = setup()
    for (let i = 0; i < 4; i++) {
      c.push(enc(`t${i}`))
      expect(sink.batches).toHaveLength(i + 1)
      await clock.advance(20)
    }
    expect(sink.batches).toEqual(['t0', 't1', 't2', 't3'])
    expect(clock.pending).toBe(0)
  })

  it('runs a due flush through `soon`: the chunks of this turn go together', async () => {
    const clock = new FakeClock()
    const sink = new RecordingSink()
    const c = new Coalescer(sink, { windowMs: 8, clock }) // soon: setImmediate
    c.push(enc('head '))
    c.push(enc('body '))
    await Promise.resolve()
    c.push(enc('end'))
    expect(sink.batches).toEqual([])
    await clock.advance(0)
    expect(sink.batches).toEqual(['head body end'])
  })

  it('sends a batch at once when it reaches maxBytes, whatever the window', async () => {
    const { clock, sink, c } = setup({ maxBytes: 6 })
    c.push(enc('aa'))
    c.push(enc('bb'))
    c.push(enc('cc'))
    expect(sink.batches).toEqual(['aa'])
    c.push(enc('ddd')) // 7 bytes gathered: they go now, the window notwithstanding
    expect(sink.batches).toEqual(['aa', 'bbccddd'])
    c.push(enc('e'))
    await clock.advance(7)
    expect(sink.batches).toEqual(['aa', 'bbccddd'])
    await clock.advance(1)
    expect(sink.batches).toEqual(['aa', 'bbccddd', 'e'])
  })

  it('says when the sink asked to wait, and drained() waits for the sink, then lets the writer go on', async () => {
    const { sink, c } = setup()
    sink.full = true
    expect(c.push(enc('a'))).toBe(false) // written, and the sink is full now
    expect(sink.batches).toEqual(['a'])
    let drained: boolean | undefined
    void c.drained().then((ok) => { drained = ok })
    await Promise.resolve()
    expect(drained).toBeUndefined()
    sink.drain()
    await new Promise((resolve) => setImmediate(resolve))
    expect(drained).toBe(true)
    expect(await c.drained()).toBe(true) // nothing to wait for now
  })

  it('reports a stall: drained() is false when the sink gave up waiting', async () => {
    const { sink, c } = setup()
    sink.full = true
    c.push(enc('a'))
    const pending = c.drained()
    sink.drain(false)
    expect(await pending).toBe(false)
  })

  it('gathers copies when asked to, for a writer that reuses its buffer', async () => {
    const { clock, sink, c } = setup({ copy: true })
    const buf = enc('xx')
    c.push(buf)
    buf.set(enc('yy'))
    c.push(buf)
    buf.set(enc('zz'))
    await clock.advance(8)
    expect(sink.batches).toEqual(['xx', 'yy'])
  })

  it('take() hands the batch to a sink that writes it itself and restarts the window; discard() drops it', async () => {
    const { clock, sink, c } = setup()
    c.push(enc('a'))
    c.push(enc('b'))
    c.push(enc('c'))
    expect(dec(c.take()!)).toBe('bc')
    expect(c.take()).toBeUndefined()
    expect(clock.pending).toBe(0)
    c.push(enc('d')) // within the window that take() started
    expect(c.holding).toBe(true)
    c.discard()
    expect(clock.pending).toBe(0)
    await clock.advance(20)
    expect(sink.batches).toEqual(['a'])
    c.push(enc('e'))
    expect(sink.batches).toEqual(['a', 'e'])
  })

  it('runs onWindowEnd before the batch goes, and what it pushes joins the batch', async () => {
    const clock = new FakeClock()
    const sink = new RecordingSink()
    const c: Coalescer = new Coalescer(sink, { windowMs: 8, soon: AT_ONCE, clock, onWindowEnd: () => { c.push(enc('late')) } })
    c.push(enc('first '))
    c.push(enc('held '))
    await clock.advance(8)
    expect(sink.batches).toEqual(['first ', 'held late'])
  })
})
