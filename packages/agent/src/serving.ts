import type { Logger } from 'pino'
import { BusyError, LlmeshError, QueueFullError, type AdmissionSnapshot, type InferPath, type Signal } from '@llmesh/protocol'
import { Admission, PeerStats, type Failure } from '@llmesh/scheduler'
import type { Runner, RunnerResponse } from '@llmesh/runners'
import { tap } from './iter.js'
import { failureOf, TokenRateScanner } from './outcomes.js'

/** How one request asks for a slot on this host. */
export interface ServeOptions {
  /** unique on this host */
  id: string
  /** 0-10, higher first */
  priority: number
  /** wait in the queue when no slot is free; otherwise BUSY at once */
  mayQueue: boolean
  /** clock time (Date.now) after which a queued request is dropped */
  deadline: number
  signal: Signal
}

export interface LocalServingInit {
  logger: Logger
  /** requests waiting per runner beyond its slots */
  queueCapacity: number
  /** the host's slots as its heartbeats report them (every ready runner's), for "busy" answers */
  slotsTotal?: () => number
  /** @default Date.now */
  now?: () => number
}

interface Waiter { resolve: () => void, reject: (err: unknown) => void }

/** Admission counters of one runner, for the admin API and the tests. */
export interface AdmissionCounters {
  runnerId: string
  model: string
  slots: number
  busy: number
  queueDepth: number
  /** most requests ever running at once on this runner */
  peakBusy: number
  /** most requests ever queued at once */
  peakQueue: number
  granted: number
  queued: number
  busyAnswers: number
  rejected: number
  expired: number
}

interface Entry { admission: Admission<Waiter>, counters: AdmissionCounters }

/** Key of the own host in the served-request statistics. */
const SELF = 'self'

/**
 * The serving side of this host: every request a local runner serves (from this agent's own
 * router or forwarded by a peer) first gets a slot from the runner's `Admission` (slots = the
 * runner's parallel slots). Beyond the slots a request waits in the priority queue when its
 * router allows it, else is answered BUSY so the router tries the next host; a full queue is
 * answered QUEUE_FULL (429 + Retry-After). Also records what this host serves (first-chunk
 * latency, tokens/s, success) for its heartbeats.
 */
export class LocalServing {
  private readonly entries = new Map<string, Entry>()
  private readonly log: Logger
  private readonly now: () => number
  private readonly capacity: number
  private readonly slotsTotal: (() => number) | undefined
  private timer?: NodeJS.Timeout
  readonly stats = new PeerStats()

  constructor (init: LocalServingInit) {
    this.log = init.logger
    this.now = init.now ?? Date.now
    this.capacity = init.queueCapacity
    this.slotsTotal = init.slotsTotal
  }

  private entry (runner: Runner): Entry {
    const slots = runner.info().slots
    let e = this.entries.get(runner.id)
    if (e == null) {
      e = {
        admission: new Admission<Waiter>({ slots, capacity: this.capacity }),
        counters: { runnerId: runner.id, model: runner.model, slots, busy: 0, queueDepth: 0, peakBusy: 0, peakQueue: 0, granted: 0, queued: 0, busyAnswers: 0, rejected: 0, expired: 0 }
      }
      this.entries.set(runner.id, e)
    } else if (e.admission.slots !== slots) {
      this.settle(e, e.admission.setSlots(slots, this.now()))
    }
    return e
  }

  /** Busy slots, total slots and queue depth over every runner: what the heartbeat says. */
  snapshot (): { slotsBusy: number, queueDepth: number } {
    let slotsBusy = 0
    let queueDepth = 0
    for (const { admission } of this.entries.values()) {
      slotsBusy += admission.busy
      queueDepth += admission.queueDepth
    }
    return { slotsBusy, queueDepth }
  }

  /** The host's admission figures over every runner, as a "busy" answer carries them. */
  admissionSnapshot (): AdmissionSnapshot {
    let served = 0
    for (const { admission } of this.entries.values()) served += admission.slots
    return { ...this.snapshot(), slotsTotal: Math.max(served, this.slotsTotal?.() ?? 0) }
  }

  /** Per runner counters, for `GET /admin/admission`. */
  counters (): AdmissionCounters[] {
    return [...this.entries.values()].map(({ admission, counters }) => ({ ...counters, slots: admission.slots, busy: admission.busy, queueDepth: admission.queueDepth }))
  }

  /** Served-request figures for the heartbeat. */
  figures (): { tokensPerSec: number, latencyMs: number, successRate: number, tokensPerSecDev?: number, latencyDev?: number } {
    const s = this.stats.get(SELF, this.now())
    return {
      tokensPerSec: s?.tokensPerSecEwma ?? 0,
      latencyMs: s?.latencyMsEwma ?? 0,
      successRate: s?.successRate ?? 1,
      ...(s?.tokensPerSecDev != null ? { tokensPerSecDev: s.tokensPerSecDev } : {}),
      ...(s?.latencyMsDev != null ? { latencyDev: s.latencyMsDev } : {})
    }
  }

  /**
   * Runs one request on a local runner once it holds a slot; the slot is freed when the body
   * ends in any way. Throws BUSY, QUEUE_FULL or DEADLINE_EXCEEDED before the runner is asked.
   */
  async serve (runner: Runner, path: InferPath, body: Record<string, unknown>, opts: ServeOptions): Promise<RunnerResponse> {
    const e = this.entry(runner)
    await this.acquire(e, opts)
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      e.counters.busy = e.admission.busy
      this.settle(e, e.admission.release(opts.id, this.now()))
    }
    const started = this.now()
    let res: RunnerResponse
    try {
      res = await runner.infer(path, body, opts.signal)
    } catch (err) {
      release()
      this.record(failureOf(err, opts.signal))
      throw err
    }
    if (res.status >= 500) this.record('server-error')
    const rate = new TokenRateScanner()
    let firstMs: number | undefined
    const observed = tap(res.body, {
      chunk: (chunk) => {
        firstMs ??= this.now() - started
        rate.scan(chunk)
      },
      complete: () => {
        if (res.status < 400) this.stats.record(SELF, { ok: true, ...(firstMs != null ? { firstTokenMs: firstMs } : {}), ...(rate.tokensPerSec != null ? { tokensPerSec: rate.tokensPerSec } : {}) }, this.now())
      },
      fail: (err) => {
        this.record(failureOf(err, opts.signal))
        return err
      },
      done: release
    })
    return { ...res, body: observed }
  }

  private record (failure: Failure): void {
    this.stats.record(SELF, { ok: false, failure }, this.now())
  }

  private async acquire (e: Entry, opts: ServeOptions): Promise<void> {
    if (opts.signal.aborted) throw opts.signal.reason
    const { admission, counters } = e
    let waiter: Waiter | undefined
    const waiting = new Promise<void>((resolve, reject) => { waiter = { resolve, reject } })
    const r = admission.acquire({ id: opts.id, priority: opts.priority, deadline: opts.deadline, mayQueue: opts.mayQueue, value: waiter! }, this.now())
    switch (r.kind) {
      case 'granted':
        counters.granted++
        this.peak(e)
        return
      case 'busy':
        counters.busyAnswers++
        throw new BusyError(`every slot of runner ${counters.runnerId} is busy (${admission.busy}/${admission.slots})`, this.admissionSnapshot())
      case 'rejected':
        counters.rejected++
        if (r.reason === 'full') throw new QueueFullError(`the queue of runner ${counters.runnerId} is full (${admission.queueDepth} waiting); retry after ${r.retryAfterSec} s`, r.retryAfterSec)
        if (r.reason === 'expired') throw new LlmeshError('DEADLINE_EXCEEDED', 'the request\'s deadline passed before it reached a slot')
        throw new LlmeshError('INVALID_REQUEST', `request id ${opts.id} is in use`)
      case 'queued':
        break
    }
    counters.queued++
    this.peak(e)
    this.arm()
    const onAbort = (): void => {
      this.settle(e, admission.cancel(opts.id, this.now()))
      waiter!.reject(opts.signal.reason)
    }
    opts.signal.addEventListener('abort', onAbort, { once: true })
    try {
      await waiting
    } finally {
      opts.signal.removeEventListener('abort', onAbort)
    }
    this.peak(e)
  }

  private peak (e: Entry): void {
    e.counters.peakBusy = Math.max(e.counters.peakBusy, e.admission.busy)
    e.counters.peakQueue = Math.max(e.counters.peakQueue, e.admission.queueDepth)
  }

  /** Hands slots to the requests the admission granted and fails the expired ones. */
  private settle (e: Entry, events: { granted: Array<{ value: Waiter }>, expired: Array<{ entry: { value: Waiter } }> }): void {
    for (const g of events.granted) {
      e.counters.granted++
      g.value.resolve()
    }
    for (const x of events.expired) {
      e.counters.expired++
      x.entry.value.reject(new LlmeshError('DEADLINE_EXCEEDED', 'the request\'s deadline passed while it waited for a slot'))
    }
    this.peak(e)
    this.arm()
  }

  /** One timer at the earliest queued deadline, over every runner. */
  private arm (): void {
    clearTimeout(this.timer)
    let next: number | undefined
    for (const { admission } of this.entries.values()) {
      const d = admission.nextDeadline()
      if (d != null && (next == null || d < next)) next = d
    }
    if (next == null) return
    this.timer = setTimeout(() => {
      const now = this.now()
      for (const e of this.entries.values()) {
        const expired = e.admission.expire(now)
        if (expired.length > 0) this.settle(e, { granted: [], expired })
      }
      this.arm()
    }, Math.max(0, next - this.now()) + 5)
    this.timer.unref()
  }

  stop (): void {
    clearTimeout(this.timer)
  }
}
