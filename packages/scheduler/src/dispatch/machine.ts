import type { ErrorCode } from '@llmesh/protocol'
import type { RankedTarget, RouteRequest } from '../cluster-view.js'
import { MAX_DISPATCHES } from '../constants.js'
import { isHostFailure } from '../outcome.js'
import { decideRetry } from '../retry.js'
import type { Dispatcher } from './dispatcher.js'
import type { AttemptFailure, DispatchAction, DispatchSpec, DispatchView, DoneAction, FailAction, Served, Waited } from './types.js'

/**
 * One request's dispatch, as a state machine: `start()` and each `next()` return what to do
 * (try a target, wait, fail; done once a target took it), and the executor reports back what
 * happened. It ranks the hosts (`rank()`, through its `Dispatcher`), sends the request to the
 * best and fails over to the next while nothing reached the client: connect errors, error
 * frames, 5xx, BUSY, STALLED. When every host answered busy the request goes round again with
 * queueing allowed; when every queue is full it fails with QUEUE_FULL and the smallest
 * Retry-After. A model no host has ready goes to the hosts loading it, else to the one host
 * rank() plans a cold start on; when it fits nowhere the request fails with
 * INSUFFICIENT_MEMORY and the numbers. Host failures wait a backoff and draw on the retry budget. Pure but for the
 * router's memory it updates (health, budget, busy answers, round-robin): no clock, no I/O,
 * randomness from the dispatcher.
 */
export class Dispatch {
  private readonly d: Dispatcher
  /** rank()'s request, built once: `exclude` is the live set of hosts tried */
  private request: RouteRequest | undefined
  private readonly tried = new Set<string>()
  /** what happened to the hosts tried, and the switches to queueing, for the route header */
  private readonly trail: string[] = []
  /** targets may queue the request: every host answered busy, or every host was full */
  private queue = false
  /** the host this request went to first: where it waits if it has to (see step) */
  private firstChoice: string | undefined
  private sawBusy = false
  /** attempts that ended in a host failure */
  private failed = 0
  /** the most telling error so far */
  private lastError: { code: ErrorCode, message: string } | undefined
  /** the smallest Retry-After of the full queues met, seconds */
  private retryAfterSec: number | undefined
  /** rounds so far (see MAX_DISPATCHES) */
  private rounds = 0
  /** the try in progress: its target, whether it may queue, how many other hosts its round ranked */
  private target: RankedTarget | undefined
  private mayQueue = false
  private others = 0
  /** view time of the try in progress */
  private triedAt = 0

  constructor (dispatcher: Dispatcher) {
    this.d = dispatcher
  }

  start (spec: DispatchSpec, view: DispatchView): DispatchAction {
    this.request = {
      model: spec.model,
      exclude: this.tried,
      ...(spec.priority != null ? { priority: spec.priority } : {}),
      ...(spec.strategy != null ? { strategy: spec.strategy } : {}),
      ...(spec.prefixKey != null ? { prefixKey: spec.prefixKey } : {}),
      ...(spec.expectedTokens != null ? { expectedTokens: spec.expectedTokens } : {}),
      ...(spec.promptTokens != null ? { promptTokens: spec.promptTokens } : {}),
      ...(spec.allowCold != null ? { allowCold: spec.allowCold } : {}),
      ...(spec.loadAnyway != null ? { loadAnyway: spec.loadAnyway } : {}),
      ...(spec.ctxSize != null ? { ctxSize: spec.ctxSize } : {})
    }
    this.d.budget.recordRequest(view.now)
    return this.step(view)
  }

  next (outcome: Served): DoneAction
  next (outcome: AttemptFailure | Waited, view: DispatchView): DispatchAction
  next (outcome: Served | AttemptFailure | Waited, view?: DispatchView): DispatchAction | DoneAction {
    if (outcome.kind === 'waited') return this.step(view!)
    const t = this.target
    if (t == null) throw new Error('no try in progress')
    this.target = undefined
    if (outcome.kind === 'served') {
      const key = this.request?.prefixKey
      if (key != null && key !== '') this.d.rememberCache(key, t.peerId, this.triedAt)
      return { kind: 'done', reasons: [...t.reasons, ...(this.mayQueue ? ['may-queue'] : []), ...this.trail], attempts: this.rounds }
    }
    return this.onFailure(t, outcome, view!)
  }

  /** Rounds of rank() until one gives a target to try, or the request fails. */
  private step (view: DispatchView): DispatchAction {
    const { now } = view
    for (;;) {
      if (this.rounds >= MAX_DISPATCHES) return this.fail(this.lastError ?? { code: 'NO_CAPACITY', message: `no host took the request after ${MAX_DISPATCHES} attempts` })
      this.rounds++
      const r = this.d.rank(this.request!, view)
      if (!r.ok) {
        if (!this.queue && this.sawBusy) {
          // every host answered busy: go round again, now allowed to wait in a queue
          this.queue = true
          this.tried.clear()
          this.trail.push('all busy: queueing')
          continue
        }
        if (this.lastError != null) return this.fail(this.lastError)
        // the numbers say it all; the models listed would not help
        if (r.code === 'INSUFFICIENT_MEMORY') return this.fail(r)
        const list = r.available.length > 0 ? r.available.join(', ') : 'none'
        return this.fail({ code: r.code, message: `${r.message}; models in the mesh: ${list}` })
      }
      let t = r.targets[0]!
      const mayQueue = this.queue || r.allFull || r.targets[0]!.waitForCache === true
      const firstChoice = this.firstChoice
      // A request that has to wait waits at its first choice, unless that host is clearly
      // busier than the best now (more requests ahead than the best host has slots: a whole
      // service time more). The first choices of routers that received requests in the same
      // instant were set apart by the spread order, when they all saw the same hosts;
      // re-ranked for the queue on views that have meanwhile taken in some of each other's
      // claims (mid-burst) and busy answers, their waiting requests stacked on whichever host
      // those partial views made look least loaded: measured, a burst of twice the slots
      // waited a whole service time more at p99 than behind a central scheduler, and about
      // as long this way (docs/BENCHMARKS.md, "A burst larger than the slots").
      if (mayQueue && firstChoice != null && t.peerId !== firstChoice) {
        if (!this.queue && this.tried.has(firstChoice)) {
          // every host full: from here on the request may wait, and its first choice (which
          // answered busy) is a candidate again
          this.queue = true
          this.tried.delete(firstChoice)
          this.trail.push('all full: queueing')
          continue
        }
        const first = r.targets.find((x) => x.peerId === firstChoice)
        if (first != null && first.load.occupied <= t.load.occupied + t.load.slots) t = first
      }
      this.tried.add(t.peerId)
      if (!this.d.health.allow(t.peerId, now)) {
        this.trail.push(`tried ${short(t.peerId)}: circuit half-open, probe out`)
        continue
      }
      this.firstChoice ??= t.peerId
      this.target = t
      this.triedAt = now
      this.mayQueue = mayQueue
      this.others = r.targets.length - 1
      return { kind: 'try', target: t, mayQueue }
    }
  }

  private onFailure (t: RankedTarget, outcome: AttemptFailure, view: DispatchView): DispatchAction {
    const { failure } = outcome
    const { now } = view
    this.d.health.report(t.peerId, { ok: false, failure }, now)
    if (failure === 'aborted') return { kind: 'fail', code: outcome.code, message: outcome.message }
    if (outcome.retryAfterSec != null && Number.isFinite(outcome.retryAfterSec)) this.retryAfterSec = Math.min(this.retryAfterSec ?? Infinity, outcome.retryAfterSec)
    if (isHostFailure(failure)) this.failed++
    // only a host that was full is a place to wait; one that failed is not
    if (failure !== 'busy' && t.peerId === this.firstChoice) this.firstChoice = undefined
    if (failure === 'busy') {
      this.sawBusy = true
      if (outcome.admission != null) this.d.rememberBusy(t.peerId, outcome.admission, now)
    }
    // keep the most telling error: a host failure over a busy answer
    if (this.lastError == null || failure !== 'busy' || this.lastError.code === 'BUSY') this.lastError = { code: outcome.code, message: outcome.message }
    this.trail.push(`tried ${short(t.peerId)}: ${failure}`)
    const d = decideRetry({ failure, streamed: false, failedAttempts: Math.max(1, this.failed), remaining: this.others, budget: this.d.budget, now, random: this.d.random })
    if (!d.retry) {
      if (failure === 'busy' && !this.queue) return this.step(view) // the next rank() finds no untried host and switches to queueing
      if (failure === 'queue-full' && this.others > 0) return this.step(view)
      return this.fail(outcome)
    }
    if (d.delayMs > 0) return { kind: 'wait', ms: d.delayMs }
    return this.step(view)
  }

  private fail (e: { code: ErrorCode, message: string }): FailAction {
    if (e.code === 'QUEUE_FULL' && this.retryAfterSec != null) return { kind: 'fail', code: e.code, message: e.message, retryAfterSec: this.retryAfterSec }
    return { kind: 'fail', code: e.code, message: e.message }
  }
}

function short (peerId: string): string {
  return peerId.slice(-8)
}
