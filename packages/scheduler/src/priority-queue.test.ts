import { describe, expect, it } from 'vitest'
import { PriorityQueue } from './priority-queue.js'

describe('PriorityQueue', () => {
  it('serves the highest priority first, oldest first among equals', () => {
    const q = new PriorityQueue<string>({ agingPerSec: 0 })
    q.enqueue({ id: 'low', priority: 1, value: 'l' }, 0)
    q.enqueue({ id: 'hi1', priority: 9, value: 'h1' }, 1)
    q.enqueue({ id: 'mid', priority: 5, value: 'm' }, 2)
    q.enqueue({ id: 'hi2', priority: 9, value: 'h2' }, 3)
    expect(q.entries().map((e) => e.id)).toEqual(['hi1', 'hi2', 'mid', 'low'])
    const out: string[] = []
    while (q.size > 0) out.push(q.dequeue(10).entry!.id)
    expect(out).toEqual(['hi1', 'hi2', 'mid', 'low'])
    expect(q.dequeue(10)).toEqual({ entry: undefined, expired: [] })
  })

  it('ages: a waiting low-priority request overtakes new high-priority ones, so it is not starved', () => {
    // 0.5 points per second: priority 0 waiting 20 s equals a fresh priority 10, and is older
    const q = new PriorityQueue<null>({ agingPerSec: 0.5 })
    q.enqueue({ id: 'low', priority: 0, value: null }, 0)
    let now = 0
    let served: number | undefined
    // a new priority-10 request arrives every second and one request is served per second
    for (let i = 0; i < 60 && served == null; i++) {
      now = i * 1000
      q.enqueue({ id: `hi${i}`, priority: 10, value: null }, now)
      if (q.dequeue(now).entry!.id === 'low') served = now
    }
    expect(served).toBe(20_000)
    // 0.5 points a second: after 20 s a priority-0 request is worth a fresh priority 10
    for (const [waited, first] of [[19_000, 'fresh'], [21_000, 'old']] as const) {
      const aged = new PriorityQueue<null>({ agingPerSec: 0.5 })
      aged.enqueue({ id: 'old', priority: 0, value: null }, 0)
      aged.enqueue({ id: 'fresh', priority: 10, value: null }, waited)
      expect(aged.dequeue(waited).entry!.id).toBe(first)
    }
  })

  it('keeps the order right on epoch-sized clocks', () => {
    const t0 = 1_800_000_000_000
    const q = new PriorityQueue<null>()
    q.enqueue({ id: 'a', priority: 3, value: null }, t0)
    q.enqueue({ id: 'b', priority: 4, value: null }, t0 + 1999)
    q.enqueue({ id: 'c', priority: 4, value: null }, t0 + 2001)
    // b is one point up and 1999 ms (0.9995 points) younger: just ahead of a; c, 2001 ms younger, just behind
    expect(q.entries().map((e) => e.id)).toEqual(['b', 'a', 'c'])
  })

  it('drops expired entries with their reason, on dequeue and on expire()', () => {
    const q = new PriorityQueue<null>()
    q.enqueue({ id: 'soon', priority: 10, deadline: 100, value: null }, 0)
    q.enqueue({ id: 'later', priority: 5, deadline: 500, value: null }, 0)
    q.enqueue({ id: 'never', priority: 1, value: null }, 0)
    expect(q.nextDeadline()).toBe(100)
    const d = q.dequeue(200)
    expect(d.expired.map((x) => [x.entry.id, x.reason])).toEqual([['soon', 'deadline']])
    expect(d.entry!.id).toBe('later')
    q.enqueue({ id: 'x', priority: 9, deadline: 300, value: null }, 200)
    expect(q.expire(299)).toEqual([])
    expect(q.expire(300).map((x) => x.entry.id)).toEqual(['x'])
    expect(q.nextDeadline()).toBeUndefined()
    expect(q.enqueue({ id: 'late', priority: 5, deadline: 300, value: null }, 300)).toEqual({ ok: false, reason: 'expired' })
  })

  it('is bounded: a full queue refuses with a Retry-After from its drain rate', () => {
    const q = new PriorityQueue<null>({ capacity: 2 })
    expect(q.enqueue({ id: 'a', priority: 5, value: null }, 0)).toEqual({ ok: true, size: 1 })
    expect(q.enqueue({ id: 'a', priority: 5, value: null }, 0)).toEqual({ ok: false, reason: 'duplicate' })
    q.enqueue({ id: 'b', priority: 5, value: null }, 0)
    // nothing drained yet: the minimum
    expect(q.enqueue({ id: 'c', priority: 5, value: null }, 0)).toEqual({ ok: false, reason: 'full', retryAfterSec: 1 })
    // one entry leaves every 4 s
    for (let t = 4000; t <= 40_000; t += 4000) {
      q.dequeue(t)
      q.enqueue({ id: `n${t}`, priority: 5, value: null }, t)
    }
    expect(q.enqueue({ id: 'd', priority: 5, value: null }, 40_000)).toEqual({ ok: false, reason: 'full', retryAfterSec: 4 })
    // a queue that stopped draining does not invite clients back at once; capped at 60 s
    expect(q.retryAfterSec(50_500)).toBe(11)
    expect(q.retryAfterSec(500_000)).toBe(60)
  })

  it('removes by id and stays a valid heap under random operations', () => {
    let s = 42
    const rnd = (): number => { s = (s * 1103515245 + 12345) % 2 ** 31; return s / 2 ** 31 }
    const q = new PriorityQueue<number>({ capacity: 1000, agingPerSec: 0.5 })
    const model = new Map<string, { p: number, t: number }>()
    let now = 0
    for (let i = 0; i < 2000; i++) {
      now += Math.floor(rnd() * 500)
      const op = rnd()
      if (op < 0.5) {
        const id = `r${i}`
        const p = Math.floor(rnd() * 11)
        q.enqueue({ id, priority: p, value: i }, now)
        model.set(id, { p, t: now })
      } else if (op < 0.65 && model.size > 0) {
        const ids = [...model.keys()]
        const id = ids[Math.floor(rnd() * ids.length)]!
        expect(q.remove(id)?.id).toBe(id)
        model.delete(id)
      } else if (model.size > 0) {
        const best = [...model.entries()].sort(([, a], [, b]) => (b.p + 0.0005 * (now - b.t)) - (a.p + 0.0005 * (now - a.t)) || a.t - b.t)[0]!
        const got = q.dequeue(now).entry!
        const eff = (x: { p: number, t: number }): number => x.p + 0.0005 * (now - x.t)
        expect(eff(model.get(got.id)!)).toBeCloseTo(eff(best[1]), 9)
        model.delete(got.id)
      }
      expect(q.size).toBe(model.size)
    }
    expect(q.remove('nope')).toBeUndefined()
  })
})
