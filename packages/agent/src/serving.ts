import { BusyError, LlmeshError, QueueFullError, type AdmissionSnapshot, type Clock, type InferPath, type Logger, type Signal, type TimerHandle } from '@llmesh/protocol'
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
  /** time on the serving clock after which a queued request is dropped, ms */
  deadline: number
  signal: Signal
  /** the conversation's key: this host now holds its cache (see cacheKeys) */
  prefixKey?: string
}

export interface LocalServingInit {
  logger: Logger
  /** the agent's clock: queue deadlines, their timer, served-request timings */
  clock: Clock
  /** requests waiting per runner beyond its slots */
  queueCapacity: number
  /** the host's slots as its heartbeats report them (every ready runner's) */
  slotsTotal?: () => number
  /** called when a conversation this host did not hold comes in: its heartbeat should say so soon */
  onNewConversation?: () => void
}

interface Waiter { resolve: () => void, reject: (err: unknown) => void }

/**
 * What LocalServing counts about one runner's admission over time, beside its Admission (which
 * alone counts what is busy and queued now).
 */
interface History {
  runnerId: string
  model: string
  /** most requests ever running at once on this runner */
  peakBusy: number
  /** most requests ever queued at once */
  peakQueue: number
  granted: number
  queued: number
  busyAnswers: number
  rejected: number
  expired: number
  /** clock time this runner last took or finished a request (0: never): least recently used goes first */
  lastUsedAt: number
  /** tokens generated, as the runner's answers tell (llama-server's `timings`; others 0) */
  tokensOut: number
  /** prompt tokens evaluated, same source */
  promptTokens: number
  /** prompt tokens taken from the runner's KV cache instead, same source */
  cachedTokens: number
}

/** Admission counters of one runner, for `GET /admin/admission` and the tests: its Admission's figures now and its history. */
export interface AdmissionCounters extends History {
  slots: number
  busy: number
  queueDepth: number
}

interface Entry { admission: Admission<Waiter>, counters: History }

/**
 * Conversations a host remembers serving: more than it publishes (MAX_CACHE_KEYS), so that the
 * published ones are the latest of a longer memory. Its KV cache (slots and llama-server's
 * host-memory prompt cache) holds at most some of them; the most recent first.
 * @default 256
 */
const CACHE_KEYS_KEPT = 256

/** A prefill-rate sample needs a prompt this long, tokens: short ones measure overhead, not prefill. @default 64 */
const PREFILL_SAMPLE_MIN_TOKENS = 64
/** Weight of a new prefill-rate sample. @default 0.2 */
const PREFILL_EWMA_ALPHA = 0.2

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
  private readonly clock: Clock
  private readonly capacity: number
  private readonly slotsTotal: (() => number) | undefined
  private timer?: TimerHandle
  readonly stats = new PeerStats()
  /** conversations served here by last use, least recent first (CACHE_KEYS_KEPT at most), with the tokens their runner held after the last turn (0: unknown) */
  private readonly conversations = new Map<string, { at: number, tokens: number }>()
  /** prompt tokens evaluated per second, EWMA over requests with PREFILL_SAMPLE_MIN_TOKENS or more */
  private prefillTokensPerSec: number | undefined
  private readonly onNewConversation: (() => void) | undefined

  constructor (init: LocalServingInit) {
    this.log = init.logger
    this.clock = init.clock
    this.capacity = init.queueCapacity
    this.slotsTotal = init.slotsTotal
    this.onNewConversation = init.onNewConversation
  }

  /** Notes that this host serves a turn of conversation `key` now: its KV cache is here. */
  private noteConversation (key: string, tokens?: number): void {
    const known = this.conversations.get(key)
    this.conversations.delete(key)
    this.conversations.set(key, { at: this.clock.now(), tokens: tokens ?? known?.tokens ?? 0 })
    if (this.conversations.size > CACHE_KEYS_KEPT) this.conversations.delete(this.conversations.keys().next().value!)
    if (known == null) this.onNewConversation?.()
  }

  /** What one answer's timings say: the tokens its conversation now holds here, and the prefill rate. */
  private noteTimings (key: string | undefined, rate: TokenRateScanner): void {
    const evaluated = rate.promptTokens
    if (evaluated != null && evaluated >= PREFILL_SAMPLE_MIN_TOKENS && rate.promptPerSec != null && rate.promptPerSec > 0) {
      this.prefillTokensPerSec = this.prefillTokensPerSec == null ? rate.promptPerSec : this.prefillTokensPerSec + PREFILL_EWMA_ALPHA * (rate.promptPerSec - this.prefillTokensPerSec)
    }
    if (key == null || evaluated == null) return
    this.noteConversation(key, (rate.cachedTokens ?? 0) + evaluated + (rate.predictedTokens ?? 0))
  }

  /** Prompt tokens this host's runners evaluate per second, when measured. */
  prefillRate (): number | undefined {
    return this.prefillTokensPerSec
  }

  /**
   * The conversations this host served last, most recent first, with ms since (at most `max`):
   * the heartbeat's `cache`, which routers follow to send each conversation's next turn here.
   */
  cacheKeys (max: number): Array<[string, number, number]> {
    const now = this.clock.now()
    const out: Array<[string, number, number]> = []
    const entries = [...this.conversations]
    for (let i = entries.length - 1; i >= 0 && out.length < max; i--) {
      const [key, { at, tokens }] = entries[i]!
      out.push([key, Math.max(0, Math.round(now - at)), tokens])
    }
    return out
  }

  private entry (runner: Runner): Entry {
    const slots = runner.info().slots
    let e = this.entries.get(runner.id)
    if (e == null) {
      e = {
        admission: new Admission<Waiter>({ slots, capacity: this.capacity }),
        counters: { runnerId: runner.id, model: runner.model, peakBusy: 0, peakQueue: 0, granted: 0, queued: 0, busyAnswers: 0, rejected: 0, expired: 0, lastUsedAt: 0, tokensOut: 0, promptTokens: 0, cachedTokens: 0 }
      }
      this.entries.set(runner.id, e)
    } else if (e.admission.slots !== slots) {
      this.settle(e, e.admission.setSlots(slots, this.clock.now()))
    }
    return e
  }

  /**
   * The host's admission figures, summed over its runners' Admissions: what the heartbeat says.
   * Total slots are the ready runners' (`slotsTotal`); a "busy" answer (`answeringBusy`) says
   * at least the slots admission serves, so that the figures it carries never read over-full.
   */
  snapshot (answeringBusy = false): AdmissionSnapshot {
    let slotsBusy = 0
    let queueDepth = 0
    let served = 0
    for (const { admission } of this.entries.values()) {
      slotsBusy += admission.busy
      queueDepth += admission.queueDepth
      served += admission.slots
    }
    const ready = this.slotsTotal?.()
    return { slotsBusy, slotsTotal: answeringBusy ? Math.max(served, ready ?? 0) : ready ?? served, queueDepth }
  }

  /**
   * How loaded a runner is by its admission, (busy + queued) / slots: which runner of a model
   * takes a request the router sent to none in particular (RunnerManager.find).
   */
  readonly load = (runner: Runner): number => {
    const a = this.entries.get(runner.id)?.admission
    return a == null ? 0 : (a.busy + a.queueDepth) / Math.max(1, a.slots)
  }

  /** Requests a runner serves or queues now (0 for a runner admission never saw). */
  inflight (runnerId: string): number {
    const a = this.entries.get(runnerId)?.admission
    return a == null ? 0 : a.busy + a.queueDepth
  }

  /** Clock time a runner last took or finished a request; 0 when it never did. */
  lastUsedAt (runnerId: string): number {
    return this.entries.get(runnerId)?.counters.lastUsedAt ?? 0
  }

  /** Forgets a runner that was stopped (its admission is empty: it was drained first). */
  forget (runnerId: string): void {
    this.entries.delete(runnerId)
  }

  /**
   * Admission per model over this host's runners, for the heartbeat (demand-driven replicas
   * read it): at most `max` models, the busiest first.
   */
  modelFigures (max: number): Array<{ model: string, slots: number, busy: number, queue: number }> {
    const by = new Map<string, { model: string, slots: number, busy: number, queue: number }>()
    for (const { admission, counters } of this.entries.values()) {
      const m = by.get(counters.model) ?? { model: counters.model, slots: 0, busy: 0, queue: 0 }
      m.slots += admission.slots
      m.busy += admission.busy
      m.queue += admission.queueDepth
      by.set(counters.model, m)
    }
    return [...by.values()].sort((a, b) => (b.busy + b.queue) - (a.busy + a.queue)).slice(0, max)
  }

  /** Per runner counters, for `GET /admin/admission`. */
  counters (): AdmissionCounters[] {
    return [...this.entries.values()].map(({ admission, counters }) => ({ ...counters, slots: admission.slots, busy: admission.busy, queueDepth: admission.queueDepth }))
  }

  /** Served-request figures for the heartbeat. */
  figures (): { tokensPerSec: number, latencyMs: number, successRate: number, tokensPerSecDev?: number, latencyDev?: number } {
    const s = this.stats.get(SELF, this.clock.now())
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
   * The body is scanned for its token rate once, here; `rate` holds it for whoever else wants it.
   */
  async serve (runner: Runner, path: InferPath, body: Record<string, unknown>, opts: ServeOptions): Promise<RunnerResponse & { rate: TokenRateScanner }> {
    const e = this.entry(runner)
    e.counters.lastUsedAt = this.clock.now()
    await this.acquire(e, opts)
    if (opts.prefixKey != null) this.noteConversation(opts.prefixKey)
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      e.counters.lastUsedAt = this.clock.now()
      this.settle(e, e.admission.release(opts.id, this.clock.now()))
    }
    const started = this.clock.now()
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
        firstMs ??= this.clock.now() - started
        rate.scan(chunk)
      },
      complete: () => {
        e.counters.tokensOut += rate.predictedTokens ?? 0
        e.counters.promptTokens += rate.promptTokens ?? 0
        e.counters.cachedTokens += rate.cachedTokens ?? 0
        if (res.status < 400) this.noteTimings(opts.prefixKey, rate)
        if (res.status < 400) this.stats.record(SELF, { ok: true, ...(firstMs != null ? { firstTokenMs: firstMs } : {}), ...(rate.tokensPerSec != null ? { tokensPerSec: rate.tokensPerSec } : {}) }, this.clock.now())
      },
      fail: (err) => {
        this.record(failureOf(err, opts.signal))
        return err
      },
      done: release
    })
    return { ...res, body: observed, rate }
  }

  private record (failure: Failure): void {
    this.stats.record(SELF, { ok: false, failure }, this.clock.now())
  }

  private async acquire (e: Entry, opts: ServeOptions): Promise<void> {
    if (opts.signal.aborted) throw opts.signal.reason
    const { admission, counters } = e
    let waiter: Waiter | undefined
    const waiting = new Promise<void>((resolve, reject) => { waiter = { resolve, reject } })
    const r = admission.acquire({ id: opts.id, priority: opts.priority, deadline: opts.deadline, mayQueue: opts.mayQueue, value: waiter! }, this.clock.now())
    switch (r.kind) {
      case 'granted':
        counters.granted++
        this.peak(e)
        return
      case 'busy':
        counters.busyAnswers++
        throw new BusyError(`every slot of runner ${counters.runnerId} is busy (${admission.busy}/${admission.slots})`, this.snapshot(true))
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
      this.settle(e, admission.cancel(opts.id, this.clock.now()))
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
    this.clock.clearTimeout(this.timer)
    let next: number | undefined
    for (const { admission } of this.entries.values()) {
      const d = admission.nextDeadline()
      if (d != null && (next == null || d < next)) next = d
    }
    if (next == null) return
    this.timer = this.clock.setTimeout(() => {
      const now = this.clock.now()
      for (const e of this.entries.values()) {
        const expired = e.admission.expire(now)
        if (expired.length > 0) this.settle(e, { granted: [], expired })
      }
      this.arm()
    }, Math.max(0, next - this.clock.now()) + 5)
  }

  stop (): void {
    this.clock.clearTimeout(this.timer)
  }
}
