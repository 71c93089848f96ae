import { AGING_PER_SEC, DRAIN_EWMA_ALPHA, MAX_RETRY_AFTER_SEC, MIN_RETRY_AFTER_SEC, QUEUE_CAPACITY } from './constants.js'
import { clampPriority } from './strategy.js'

export interface PriorityQueueInit {
  /** entries held at most; beyond it enqueue is refused with a Retry-After. @default 64 */
  capacity?: number
  /** effective-priority points gained per second of waiting. @default 0.5 */
  agingPerSec?: number
  /** @default 1 s */
  minRetryAfterSec?: number
  /** @default 60 s */
  maxRetryAfterSec?: number
  /** @default 0.2 */
  drainEwmaAlpha?: number
}

export interface QueueEntry<T> {
  id: string
  /** 0-10, higher first (clamped) */
  priority: number
  /** clock time it was enqueued, ms */
  enqueuedAt: number
  /** clock time after which it is dropped, ms */
  deadline?: number
  value: T
}

export type EnqueueResult =
  | { ok: true, size: number }
  /** full: tell the client to come back after retryAfterSec (HTTP 429 + Retry-After) */
  | { ok: false, reason: 'full', retryAfterSec: number }
  /** its deadline had already passed */
  | { ok: false, reason: 'expired' }
  /** an entry with this id is queued already */
  | { ok: false, reason: 'duplicate' }

export interface Expired<T> {
  entry: QueueEntry<T>
  reason: 'deadline'
}

interface Slot<T> {
  entry: QueueEntry<T>
  /** time-invariant order key, see `PriorityQueue` */
  key: number
  seq: number
}

/**
 * A bounded priority queue with aging and deadlines, on an injected clock (every method that
 * depends on time takes `now`, ms). Pure: no timers; the owner calls `expire(now)` when the
 * nearest deadline (`nextDeadline()`) passes, or lets `dequeue(now)` drop expired entries.
 *
 * Order: highest effective priority first, where
 *
 *     effective(now) = priority + agingPerSec x (now - enqueuedAt) / 1000
 *
 * so low priority is never starved: an entry of priority p overtakes any later arrival after
 * (10 - p) / agingPerSec seconds (20 s for p = 0 at the default 0.5/s). Because every entry ages
 * at the same rate, effective(now) = [priority - agingPerSec x enqueuedAt / 1000] + agingPerSec
 * x now / 1000: the bracket is fixed per entry, so a plain binary heap on it stays ordered as
 * time passes (O(log n) per operation, no re-sorting). Equal effective priority: older first.
 *
 * Retry-After when full: the time one place takes to free, estimated as the EWMA of the
 * intervals between dequeues, or the time since the last one (or since the queue filled up)
 * when that is longer, so a queue that stopped draining does not invite clients back at once.
 * Rounded up to whole seconds, within [minRetryAfterSec, maxRetryAfterSec].
 */
export class PriorityQueue<T> {
  readonly capacity: number
  private readonly agingPerMs: number
  private readonly minRetryAfterSec: number
  private readonly maxRetryAfterSec: number
  private readonly alpha: number
  private readonly heap: Array<Slot<T>> = []
  private readonly index = new Map<string, number>()
  private seq = 0
  private origin: number | undefined
  private drainMs: number | undefined
  private lastProgressAt: number | undefined

  constructor (init: PriorityQueueInit = {}) {
    this.capacity = Math.max(0, Math.floor(init.capacity ?? QUEUE_CAPACITY))
    this.agingPerMs = Math.max(0, init.agingPerSec ?? AGING_PER_SEC) / 1000
    this.minRetryAfterSec = init.minRetryAfterSec ?? MIN_RETRY_AFTER_SEC
    this.maxRetryAfterSec = Math.max(this.minRetryAfterSec, init.maxRetryAfterSec ?? MAX_RETRY_AFTER_SEC)
    this.alpha = init.drainEwmaAlpha ?? DRAIN_EWMA_ALPHA
  }

  get size (): number {
    return this.heap.length
  }

  has (id: string): boolean {
    return this.index.has(id)
  }

  /** Queues an item at `now`; refuses it when full, expired or already queued. */
  enqueue (item: { id: string, priority: number, deadline?: number, value: T }, now: number): EnqueueResult {
    if (this.index.has(item.id)) return { ok: false, reason: 'duplicate' }
    if (item.deadline != null && item.deadline <= now) return { ok: false, reason: 'expired' }
    if (this.heap.length >= this.capacity) return { ok: false, reason: 'full', retryAfterSec: this.retryAfterSec(now) }
    if (this.heap.length === 0) this.lastProgressAt = now
    this.origin ??= now
    const entry: QueueEntry<T> = { id: item.id, priority: clampPriority(item.priority), enqueuedAt: now, value: item.value }
    if (item.deadline != null) entry.deadline = item.deadline
    // relative to the first enqueue, so that epoch-sized clocks keep the key's precision
    const key = entry.priority - this.agingPerMs * (now - this.origin)
    this.heap.push({ entry, key, seq: this.seq++ })
    this.index.set(entry.id, this.heap.length - 1)
    this.up(this.heap.length - 1)
    return { ok: true, size: this.heap.length }
  }

  /** The entry of highest effective priority, after dropping expired ones (returned too). */
  dequeue (now: number): { entry: QueueEntry<T> | undefined, expired: Array<Expired<T>> } {
    const expired: Array<Expired<T>> = []
    while (this.heap.length > 0) {
      const top = this.heap[0]!.entry
      this.removeAt(0)
      if (top.deadline != null && top.deadline <= now) {
        expired.push({ entry: top, reason: 'deadline' })
        continue
      }
      this.progress(now)
      return { entry: top, expired }
    }
    return { entry: undefined, expired }
  }

  /** Removes an entry (its client went away); undefined when it is not queued. */
  remove (id: string): QueueEntry<T> | undefined {
    const i = this.index.get(id)
    if (i == null) return undefined
    const entry = this.heap[i]!.entry
    this.removeAt(i)
    return entry
  }

  /** Drops every entry whose deadline has passed and returns them, oldest deadline first. */
  expire (now: number): Array<Expired<T>> {
    const gone = this.heap.filter((s) => s.entry.deadline != null && s.entry.deadline <= now).map((s) => s.entry)
    gone.sort((a, b) => a.deadline! - b.deadline!)
    for (const e of gone) this.remove(e.id)
    return gone.map((entry) => ({ entry, reason: 'deadline' as const }))
  }

  /** The nearest deadline of any queued entry: when the owner should call `expire()`. */
  nextDeadline (): number | undefined {
    let min: number | undefined
    for (const s of this.heap) if (s.entry.deadline != null && (min == null || s.entry.deadline < min)) min = s.entry.deadline
    return min
  }

  /** Queued entries, in dequeue order (for the admin API and tests). */
  entries (): Array<QueueEntry<T>> {
    return [...this.heap].sort((a, b) => this.before(a, b) ? -1 : 1).map((s) => s.entry)
  }

  /** Seconds a refused client should wait (see the class comment). */
  retryAfterSec (now: number): number {
    const since = this.lastProgressAt != null && this.heap.length > 0 ? Math.max(0, now - this.lastProgressAt) : 0
    const ms = Math.max(this.drainMs ?? 0, since)
    return Math.min(this.maxRetryAfterSec, Math.max(this.minRetryAfterSec, Math.ceil(ms / 1000)))
  }

  private progress (now: number): void {
    if (this.lastProgressAt != null) {
      const interval = Math.max(0, now - this.lastProgressAt)
      this.drainMs = this.drainMs == null ? interval : this.drainMs + this.alpha * (interval - this.drainMs)
    }
    this.lastProgressAt = now
  }

  private before (a: Slot<T>, b: Slot<T>): boolean {
    if (a.key !== b.key) return a.key > b.key
    if (a.entry.enqueuedAt !== b.entry.enqueuedAt) return a.entry.enqueuedAt < b.entry.enqueuedAt
    return a.seq < b.seq
  }

  private removeAt (i: number): void {
    const last = this.heap.pop()!
    this.index.delete(this.heap.length === i ? last.entry.id : this.heap[i]!.entry.id)
    if (i === this.heap.length) return
    this.heap[i] = last
    this.index.set(last.entry.id, i)
    this.down(i)
    this.up(i)
  }

  private up (i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(this.heap[i]!, this.heap[parent]!)) break
      this.swap(i, parent)
      i = parent
    }
  }

  private down (i: number): void {
    const n = this.heap.length
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let best = i
      if (l < n && this.before(this.heap[l]!, this.heap[best]!)) best = l
      if (r < n && this.before(this.heap[r]!, this.heap[best]!)) best = r
      if (best === i) return
      this.swap(i, best)
      i = best
    }
  }

  private swap (a: number, b: number): void {
    const t = this.heap[a]!
    this.heap[a] = this.heap[b]!
    this.heap[b] = t
    this.index.set(this.heap[a]!.entry.id, a)
    this.index.set(this.heap[b]!.entry.id, b)
  }
}
