import type { AdmissionSnapshot } from '@llmesh/protocol'
import { DEFAULT_PRIORITY } from './constants.js'
import { PriorityQueue, type Expired, type PriorityQueueInit, type QueueEntry } from './priority-queue.js'

export interface AdmissionInit extends PriorityQueueInit {
  /** parallel requests the host serves (its runners' slots); 0 admits nothing until setSlots */
  slots: number
}

export interface AdmitRequest<T> {
  /** unique per request; release and cancel name it */
  id: string
  /** 0-10, higher first. @default 5 */
  priority?: number
  /** clock time after which a queued request is dropped, ms */
  deadline?: number
  /**
   * Wait in the queue when no slot is free. The router sets it only when it has nowhere better
   * to go (`RankResult.allFull`, or every target answered busy): otherwise a full host answers
   * "busy" at once and the router tries the next.
   * @default false
   */
  mayQueue?: boolean
  /** carried back in `granted` / `expired` events, e.g. the resolvers of a waiting promise */
  value: T
}

export type AdmitResult =
  /** a slot is the caller's: run, then `release(id)` */
  | { kind: 'granted' }
  /** wait for the id to come back in a `granted` (or `expired`) event */
  | { kind: 'queued', queueDepth: number }
  /** no free slot and queueing not allowed: answer BUSY, the router tries the next host */
  | { kind: 'busy', queueDepth: number }
  /** the queue is full: HTTP 429 with Retry-After */
  | { kind: 'rejected', reason: 'full', retryAfterSec: number }
  /** its deadline had passed, or the id is in use */
  | { kind: 'rejected', reason: 'expired' | 'duplicate' }

/** What changed as a side effect of a call: requests given a slot, requests dropped. */
export interface AdmissionEvents<T> {
  granted: Array<QueueEntry<T>>
  expired: Array<Expired<T>>
}

/**
 * Slot-aware admission for one host, paddler-style: at most `slots` requests run at once;
 * beyond that a request either waits in a bounded priority queue (aging, deadlines: see
 * PriorityQueue) or is answered "busy" so its router can try another host. Pure and
 * synchronous, on an injected clock; the agent turns it into promises:
 *
 *     const r = admission.acquire({ id, priority, deadline, mayQueue, value: { resolve, reject } }, now())
 *     granted -> run now;  queued -> await the promise;  busy -> BUSY;  rejected -> 429 / 504
 *     finally: for (const e of admission.release(id, now()).granted) e.value.resolve()
 *     timer at admission.nextDeadline(): for (const x of admission.expire(now())) x.entry.value.reject(...)
 *
 * The busy count never goes negative and never exceeds the slots by a grant: only ids that
 * hold a slot can release one, and each only once. It is the host's one count of busy slots:
 * runners do not keep one for admission, and the agent reads this one.
 */
export class Admission<T> {
  private readonly queue: PriorityQueue<T>
  private readonly holders = new Set<string>()
  private total: number

  constructor (init: AdmissionInit) {
    this.total = Math.max(0, Math.floor(init.slots))
    this.queue = new PriorityQueue<T>(init)
  }

  get slots (): number { return this.total }
  get busy (): number { return this.holders.size }
  get queueDepth (): number { return this.queue.size }
  get free (): number { return Math.max(0, this.total - this.holders.size) }

  /** Its figures as the heartbeat and a BUSY answer carry them. */
  snapshot (): AdmissionSnapshot {
    return { slotsBusy: this.busy, slotsTotal: this.total, queueDepth: this.queue.size }
  }

  acquire (req: AdmitRequest<T>, now: number): AdmitResult {
    if (this.holders.has(req.id) || this.queue.has(req.id)) return { kind: 'rejected', reason: 'duplicate' }
    if (req.deadline != null && req.deadline <= now) return { kind: 'rejected', reason: 'expired' }
    // queued requests were here first: a newcomer only takes a slot none of them can
    if (this.free > 0 && this.queue.size === 0) {
      this.holders.add(req.id)
      return { kind: 'granted' }
    }
    if (req.mayQueue !== true) return { kind: 'busy', queueDepth: this.queue.size }
    const q = this.queue.enqueue({ id: req.id, priority: req.priority ?? DEFAULT_PRIORITY, ...(req.deadline != null ? { deadline: req.deadline } : {}), value: req.value }, now)
    if (!q.ok) return q.reason === 'full' ? { kind: 'rejected', reason: 'full', retryAfterSec: q.retryAfterSec } : { kind: 'rejected', reason: q.reason }
    return { kind: 'queued', queueDepth: this.queue.size }
  }

  /** Frees the slot `id` holds (nothing if it holds none) and hands free slots to the queue. */
  release (id: string, now: number): AdmissionEvents<T> {
    this.holders.delete(id)
    return this.pump(now)
  }

  /** The request is gone (client closed): out of the queue, or its slot released. */
  cancel (id: string, now: number): AdmissionEvents<T> {
    this.queue.remove(id)
    return this.release(id, now)
  }

  /** The host's slot count changed (a runner came up or went away). */
  setSlots (slots: number, now: number): AdmissionEvents<T> {
    this.total = Math.max(0, Math.floor(slots))
    return this.pump(now)
  }

  /** Drops queued requests whose deadline has passed. */
  expire (now: number): Array<Expired<T>> {
    return this.queue.expire(now)
  }

  /** When the owner should call `expire()` next. */
  nextDeadline (): number | undefined {
    return this.queue.nextDeadline()
  }

  /** Seconds a refused client should wait before trying again. */
  retryAfterSec (now: number): number {
    return this.queue.retryAfterSec(now)
  }

  private pump (now: number): AdmissionEvents<T> {
    const events: AdmissionEvents<T> = { granted: [], expired: [] }
    while (this.free > 0 && this.queue.size > 0) {
      const { entry, expired } = this.queue.dequeue(now)
      events.expired.push(...expired)
      if (entry == null) break
      this.holders.add(entry.id)
      events.granted.push(entry)
    }
    return events
  }
}
