import { describe, expect, it } from 'vitest'
import { FakeClock } from '@llmesh/testkit'
import { PacedReader, type PausableSource } from './paced-reader.js'

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const dec = (b: Uint8Array): string => new TextDecoder().decode(b)

/**
 * A source as undici's parser behaves: `send` hands a chunk over unless paused, else it waits
 * (in the kernel, for a runner socket); `resume` hands over what waited, synchronously, until a
 * chunk pauses it again.
 */
class FakeSource implements PausableSource {
  paused = false
  pauses = 0
  private waiting: Uint8Array[] = []
  constructor (private readonly reader: PacedReader) {
    reader.attach(this)
  }

  send (s: string): void {
    this.waiting.push(enc(s))
    this.run()
  }

  pause (): void {
    this.paused = true
    this.pauses++
  }

  resume (): void {
    this.paused = false
    this.run()
  }

  get backlog (): number {
    return this.waiting.length
  }

  private run (): void {
    while (!this.paused && this.waiting.length > 0) this.reader.push(this.waiting.shift()!)
  }
}

function setup (init: { maxUnreadBytes?: number, onReturn?: () => void } = {}): { clock: FakeClock, reader: PacedReader, source: FakeSource } {
  const clock = new FakeClock()
  const reader = new PacedReader({ windowMs: 8, clock, ...init })
  return { clock, reader, source: new FakeSource(reader) }
}

async function readAll (reader: PacedReader): Promise<string[]> {
  const out: string[] = []
  for await (const b of reader) out.push(dec(b))
  return out
}

describe('PacedReader', () => {
  it('passes the first chunk at once, pauses the source for the rest of the window, and delivers what came meanwhile as one batch', async () => {
    const { clock, reader, source } = setup()
    source.send('t0 ')
    expect(source.paused).toBe(false)
    expect(dec((await reader.next()).value as Uint8Array)).toBe('t0 ')
    await clock.advance(3)
    source.send('t1 ') // within the window: held, and the source paused
    expect(source.paused).toBe(true)
    source.send('t2 ')
    source.send('t3 ') // these wait in the source
    expect(source.backlog).toBe(2)
    await clock.advance(5)
    // the window ended: the source was resumed, and what it handed over joined the batch
    expect(source.backlog).toBe(0)
    expect(dec((await reader.next()).value as Uint8Array)).toBe('t1 t2 t3 ')
    expect(source.paused).toBe(false)
    expect(source.pauses).toBe(1)
    reader.end()
    expect((await reader.next()).done).toBe(true)
    expect(clock.pending).toBe(0)
  })

  it('passes a stream slower than the window chunk by chunk without pausing it', async () => {
    const { clock, reader, source } = setup()
    const got: string[] = []
    for (let i = 0; i < 4; i++) {
      source.send(`t${i}`)
      got.push(dec((await reader.next()).value as Uint8Array))
      await clock.advance(20)
    }
    expect(got).toEqual(['t0', 't1', 't2', 't3'])
    expect(source.pauses).toBe(0)
  })

  it('pauses the source while the consumer is maxUnreadBytes behind, resumes it below half, and loses nothing', async () => {
    const { clock, reader, source } = setup({ maxUnreadBytes: 40 })
    const block = (i: number): string => String(i % 10).repeat(10)
    let sent = 0
    // one block per window, faster than the consumer (which does not read yet)
    for (let i = 0; i < 10; i++) {
      source.send(block(sent++))
      await clock.advance(8)
    }
    // 4 blocks delivered (40 bytes) and the source paused: the other 6 wait in it
    expect(source.paused).toBe(true)
    expect(source.backlog).toBe(6)
    const got: string[] = []
    got.push(dec((await reader.next()).value as Uint8Array))
    got.push(dec((await reader.next()).value as Uint8Array))
    expect(source.paused).toBe(true) // 20 bytes unread: not below half yet
    got.push(dec((await reader.next()).value as Uint8Array))
    await new Promise((resolve) => setImmediate(resolve))
    expect(source.paused).toBe(true) // resumed below half, and paused again by the window
    for (let i = 0; i < 5; i++) await clock.advance(8)
    reader.end()
    got.push(...await readAll(reader))
    expect(got.join('')).toBe(Array.from({ length: 10 }, (_, i) => block(i)).join(''))
  })

  it('delivers what it holds at the end, and at a failure before throwing it', async () => {
    const a = setup()
    a.source.send('x')
    a.source.send('y')
    a.reader.end()
    expect(await readAll(a.reader)).toEqual(['x', 'y'])

    const b = setup()
    b.source.send('x')
    b.source.send('y')
    b.reader.fail(new Error('runner dropped the connection'))
    expect(dec((await b.reader.next()).value as Uint8Array)).toBe('x')
    expect(dec((await b.reader.next()).value as Uint8Array)).toBe('y')
    await expect(b.reader.next()).rejects.toThrow('runner dropped the connection')
    expect(b.clock.pending).toBe(0)
  })

  it('wakes a consumer waiting for the next batch', async () => {
    const { clock, reader, source } = setup()
    const next = reader.next()
    source.send('a')
    expect(dec((await next).value as Uint8Array)).toBe('a')
    const last = reader.next()
    await clock.advance(1)
    reader.end()
    expect((await last).done).toBe(true)
  })

  it('drops what it holds and stops the source when the consumer leaves early', async () => {
    let stopped = 0
    const { clock, reader, source } = setup({ onReturn: () => { stopped++ } })
    source.send('a')
    source.send('b')
    expect(source.paused).toBe(true)
    await reader.return()
    await reader.return()
    expect(stopped).toBe(1)
    expect(clock.pending).toBe(0)
    await clock.advance(20)
    expect(source.paused).toBe(true) // not resumed for a consumer that left
    expect(dec((await reader.next()).value as Uint8Array)).toBe('a')
    expect((await reader.next()).done).toBe(true)
  })
})
