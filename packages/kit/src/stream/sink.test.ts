import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import { FakeClock } from '@llmesh/testkit'
import { drainedWithin } from './sink.js'

const listen = (e: EventEmitter) => (wake: () => void): () => void => {
  e.on('drain', wake)
  e.on('close', wake)
  return () => {
    e.off('drain', wake)
    e.off('close', wake)
  }
}

describe('drainedWithin', () => {
  it('is true once the sink drains, and leaves no listener or timer behind', async () => {
    const clock = new FakeClock()
    const e = new EventEmitter()
    const pending = drainedWithin(1000, listen(e), clock)
    expect(e.listenerCount('drain')).toBe(1)
    await clock.advance(999)
    e.emit('drain')
    expect(await pending).toBe(true)
    expect(e.listenerCount('drain') + e.listenerCount('close')).toBe(0)
    expect(clock.pending).toBe(0)
  })

  it('is true when the sink closes: the writer finds out at its next write', async () => {
    const clock = new FakeClock()
    const e = new EventEmitter()
    const pending = drainedWithin(1000, listen(e), clock)
    e.emit('close')
    expect(await pending).toBe(true)
  })

  it('is false when the consumer read nothing for stallMs, and unsubscribes', async () => {
    const clock = new FakeClock()
    const e = new EventEmitter()
    let result: boolean | undefined
    void drainedWithin(1000, listen(e), clock).then((ok) => { result = ok })
    await clock.advance(999)
    expect(result).toBeUndefined()
    await clock.advance(1)
    expect(result).toBe(false)
    expect(e.listenerCount('drain') + e.listenerCount('close')).toBe(0)
    e.emit('drain') // too late: changes nothing
    expect(result).toBe(false)
  })

  it('is true when woken while it subscribes, and still unsubscribes', async () => {
    const clock = new FakeClock()
    let subscribed = 0
    const ok = await drainedWithin(1000, (wake) => {
      subscribed++
      wake()
      return () => { subscribed-- }
    }, clock)
    expect(ok).toBe(true)
    expect(subscribed).toBe(0)
    expect(clock.pending).toBe(0)
  })
})
