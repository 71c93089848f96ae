import type { Logger } from 'pino'
import { BusyError, LlmeshError, QueueFullError, toLlmeshError, type AdmissionSnapshot, type InferPath, type NodeRecord, type Signal } from '@llmesh/protocol'
import {
  Claims, PeerHealth, RetryBudget, decideRetry, isHostFailure, overlayReport, rank, targetMetrics,
  type RankedTarget, type ReportingPeer, type RoundRobinState, type Strategy, type TargetMetrics
} from '@llmesh/scheduler'
import { BUSY_REPORT_TTL_MS } from './constants.js'
import { tap } from './iter.js'
import { failureOf, TokenRateScanner } from './outcomes.js'

/** One request as the router dispatches it. */
export interface DispatchRequest {
  id: string
  path: InferPath
  model: string
  body: Record<string, unknown>
  /** unset: the configured default */
  strategy?: Strategy
  priority: number
  prefixKey?: string
  /** output tokens expected (max_tokens), for the performance score */
  expectedTokens?: number
  /** clock time (Date.now) after which the request may no longer wait for a slot */
  deadline: number
  signal: Signal
}

/** What the router asks one target to do. */
export interface ForwardOptions {
  id: string
  path: InferPath
  model: string
  body: Record<string, unknown>
  priority: number
  mayQueue: boolean
  deadline: number
  signal: Signal
}

/** A target's answer, before anything went to the client. */
export interface Forwarded {
  status: number
  contentType: string
  runnerId: string
  body: AsyncIterable<Uint8Array>
}

export interface RoutedTarget {
  peerId: string
  runnerId: string
  local: boolean
  /** why this target, and what happened to the ones tried before */
  reasons: string[]
}

/** A request routed to a target and its response, ready to stream to the client. */
export interface RoutedResponse {
  status: number
  contentType: string
  body: AsyncIterable<Uint8Array>
  target: RoutedTarget
  /** targets asked, this one included */
  attempts: number
}

export interface RouterComponents {
  selfPeerId: () => string
  /** every node record of the cluster document */
  nodes: () => readonly NodeRecord[]
  /** peers as membership knows them, and the own host (lastHeardAt = now) */
  members: () => Iterable<ReportingPeer>
  /** peers a request may be sent to now */
  reachable: () => ReadonlySet<string>
  forward: (target: RankedTarget, opts: ForwardOptions) => Promise<Forwarded>
  defaultStrategy: Strategy
  logger: Logger
  /** @default Date.now */
  now?: () => number
  /** @default Math.random */
  random?: () => number
  /** called whenever this router's claims change, so they reach other routers at once */
  onClaimsChange?: () => void
}

/** Most targets one request is sent to in all, whatever the retry decisions say: a guard. */
const MAX_DISPATCHES = 32

/**
 * The entry side of every request: ranks the hosts (scheduler `rank()`), claims the chosen
 * one (gossiped so other routers see it), forwards, and fails over to the next host while
 * nothing reached the client yet: connect errors, error frames, 5xx, BUSY, STALLED. When every
 * host answered busy the request goes again with queueing allowed; when every queue is full it
 * fails with QUEUE_FULL (429) and the smallest Retry-After. Outcomes feed PeerHealth (circuit
 * breakers and observed latency / tokens/s), retries draw on a RetryBudget.
 */
export class Router {
  readonly claims = new Claims()
  readonly health = new PeerHealth()
  readonly budget = new RetryBudget()
  private rr: RoundRobinState = new Map()
  /** what hosts' "busy" answers said of them, until their next heartbeat (see BUSY_REPORT_TTL_MS) */
  private readonly busyReports = new Map<string, { report: AdmissionSnapshot, at: number }>()
  private readonly c: RouterComponents
  private readonly now: () => number
  private readonly random: () => number

  constructor (components: RouterComponents) {
    this.c = components
    this.now = components.now ?? Date.now
    this.random = components.random ?? Math.random
  }

  /** Claims a target and tells the mesh, on claim and on release. */
  private claim (peerId: string): () => void {
    const release = this.claims.claim(peerId)
    this.c.onClaimsChange?.()
    return () => {
      release()
      this.c.onClaimsChange?.()
    }
  }

  async dispatch (req: DispatchRequest): Promise<RoutedResponse> {
    const { signal } = req
    const self = this.c.selfPeerId()
    this.budget.recordRequest(this.now())
    const tried = new Set<string>()
    const trail: string[] = []
    let queue = false
    /** the host this request went to first: where it waits if it has to (see below) */
    let firstChoice: string | undefined
    let sawBusy = false
    let failed = 0
    let lastError: LlmeshError | undefined
    let retryAfterSec: number | undefined
    for (let attempt = 1; attempt <= MAX_DISPATCHES; attempt++) {
      if (signal.aborted) throw signal.reason
      const now = this.now()
      const metrics = this.withBusyReports(this.health.metrics(targetMetrics(this.c.members(), self), now), now)
      const r = rank({
        view: { nodes: this.c.nodes(), metrics },
        request: {
          model: req.model,
          priority: req.priority,
          exclude: tried,
          ...(req.strategy != null ? { strategy: req.strategy } : {}),
          ...(req.prefixKey != null ? { prefixKey: req.prefixKey } : {}),
          ...(req.expectedTokens != null ? { expectedTokens: req.expectedTokens } : {})
        },
        selfPeerId: self,
        reachable: this.c.reachable(),
        inflight: this.claims.inflight,
        random: this.random,
        now,
        roundRobin: this.rr,
        circuits: this.health.circuits(now),
        defaultStrategy: this.c.defaultStrategy
      })
      this.rr = r.roundRobin
      if (!r.ok) {
        if (!queue && sawBusy) {
          // every host answered busy: go round again, now allowed to wait in a queue
          queue = true
          tried.clear()
          trail.push('all busy: queueing')
          continue
        }
        if (lastError != null) throw withRetryAfter(lastError, retryAfterSec)
        const list = r.available.length > 0 ? r.available.join(', ') : 'none'
        throw new LlmeshError(r.code, `${r.message}; models in the mesh: ${list}`)
      }
      let t = r.targets[0]!
      const mayQueue = queue || r.allFull
      // A request that has to wait waits at its first choice, unless that host is clearly
      // busier than the best now (more requests ahead than the best host has slots: a whole
      // service time more). The first choices of routers that received requests in the same
      // instant were set apart by the spread order, when they all saw the same hosts;
      // re-ranked for the queue on views that have meanwhile taken in some of each other's
      // claims (mid-burst) and busy answers, their waiting requests stacked on whichever host
      // those partial views made look least loaded: measured, a burst of twice the slots
      // waited a whole service time more at p99 than behind a central scheduler (least-loaded
      // / performance 149 / 146 against 120 ms), and 117-130 / 117-122 against 115-124 ms
      // this way.
      if (mayQueue && firstChoice != null && t.peerId !== firstChoice) {
        if (!queue && tried.has(firstChoice)) {
          // every host full: from here on the request may wait, and its first choice (which
          // answered busy) is a candidate again
          queue = true
          tried.delete(firstChoice)
          trail.push('all full: queueing')
          continue
        }
        const first = r.targets.find((x) => x.peerId === firstChoice)
        if (first != null && first.load.occupied <= t.load.occupied + t.load.slots) t = first
      }
      tried.add(t.peerId)
      if (!this.health.allow(t.peerId, now)) {
        trail.push(`tried ${short(t.peerId)}: circuit half-open, probe out`)
        continue
      }
      firstChoice ??= t.peerId
      const release = this.claim(t.peerId)
      const started = this.now()
      let res: Forwarded
      let first: IteratorResult<Uint8Array>
      let it: AsyncIterator<Uint8Array>
      try {
        res = await this.c.forward(t, { id: req.id, path: req.path, model: req.model, body: req.body, priority: req.priority, mayQueue, deadline: req.deadline, signal })
        it = res.body[Symbol.asyncIterator]()
        if (res.status === 429 || (res.status >= 500 && res.status !== 501)) throw await statusError(res.status, it)
        // nothing goes to the client before the first chunk: until then a failure can move on
        first = await it.next()
      } catch (err) {
        release()
        const e = toLlmeshError(err, 'PEER_UNREACHABLE')
        const failure = failureOf(err, signal)
        this.health.report(t.peerId, { ok: false, failure }, this.now())
        if (failure === 'aborted') throw signal.reason ?? e
        if (e instanceof QueueFullError) retryAfterSec = Math.min(retryAfterSec ?? Infinity, e.retryAfterSec)
        if (isHostFailure(failure)) failed++
        // only a host that was full is a place to wait; one that failed is not
        if (failure !== 'busy' && t.peerId === firstChoice) firstChoice = undefined
        if (failure === 'busy') {
          sawBusy = true
          if (e instanceof BusyError && e.admission != null) this.busyReports.set(t.peerId, { report: e.admission, at: this.now() })
        }
        // keep the most telling error: a host failure over a busy answer
        if (lastError == null || failure !== 'busy' || lastError.code === 'BUSY') lastError = e
        trail.push(`tried ${short(t.peerId)}: ${failure}`)
        this.c.logger.debug({ reqId: req.id, target: t.peerId, failure, err: e.message }, 'forward failed')
        const d = decideRetry({ failure, streamed: false, failedAttempts: Math.max(1, failed), remaining: r.targets.length - 1, budget: this.budget, now: this.now(), random: this.random })
        if (!d.retry) {
          if (failure === 'busy' && !queue) continue // the next rank() finds no untried host and switches to queueing
          if (failure === 'queue-full' && r.targets.length > 1) continue
          throw withRetryAfter(e, retryAfterSec)
        }
        if (d.delayMs > 0) await sleep(d.delayMs, signal)
        continue
      }
      const firstMs = this.now() - started
      const target: RoutedTarget = { peerId: t.peerId, runnerId: res.runnerId, local: t.local, reasons: [...t.reasons, ...(mayQueue ? ['may-queue'] : []), ...trail] }
      this.c.logger.debug({ reqId: req.id, target: t.peerId, attempt, firstMs }, 'routed')
      return { status: res.status, contentType: res.contentType, target, attempts: attempt, body: this.observe(t.peerId, first, it, res.status, firstMs, signal, release) }
    }
    throw lastError ?? new LlmeshError('NO_CAPACITY', `no host took the request after ${MAX_DISPATCHES} attempts`)
  }

  /**
   * Lays what busy answers said over the metrics: such a host counts as full (with the queue it
   * reported) until a heartbeat newer than the answer arrives, or BUSY_REPORT_TTL_MS passed.
   * Without it, a router sends every request until that heartbeat to the host its last request
   * found full, and collects a busy answer for each.
   */
  private withBusyReports (metrics: Map<string, TargetMetrics>, now: number): Map<string, TargetMetrics> {
    let out = metrics
    for (const [peerId, { report, at }] of this.busyReports) {
      if ((metrics.get(peerId)?.heartbeatAt ?? -Infinity) > at || now - at > BUSY_REPORT_TTL_MS) {
        this.busyReports.delete(peerId)
        continue
      }
      out = overlayReport(out, peerId, report, at)
    }
    return out
  }

  /** The committed stream: reports its outcome (latency, tokens/s, or how it failed) at its end, then releases the claim. */
  private observe (peerId: string, first: IteratorResult<Uint8Array>, it: AsyncIterator<Uint8Array>, status: number, firstMs: number, signal: Signal, release: () => void): AsyncIterableIterator<Uint8Array> {
    const rate = new TokenRateScanner()
    return tap(it, {
      chunk: (chunk) => { rate.scan(chunk) },
      complete: () => {
        if (status < 400) this.health.report(peerId, { ok: true, firstTokenMs: firstMs, ...(rate.tokensPerSec != null ? { tokensPerSec: rate.tokensPerSec } : {}) }, this.now())
      },
      fail: (err) => {
        this.health.report(peerId, { ok: false, failure: failureOf(err, signal) }, this.now())
        return err
      },
      done: release
    }, first)
  }
}

function short (peerId: string): string {
  return peerId.slice(-8)
}

function withRetryAfter (err: LlmeshError, retryAfterSec: number | undefined): LlmeshError {
  if (err.code !== 'QUEUE_FULL' || retryAfterSec == null || !Number.isFinite(retryAfterSec) || err instanceof QueueFullError) return err
  return new QueueFullError(err.message, retryAfterSec)
}

/**
 * A 5xx head from a target (its runner's error), or the 429 head with which a peer older than
 * QUEUE_FULL's ERROR frame answers a full queue, read into an error (the body is small JSON).
 */
async function statusError (status: number, it: AsyncIterator<Uint8Array>): Promise<LlmeshError> {
  let text = ''
  const decoder = new TextDecoder()
  try {
    for (;;) {
      const n = await it.next()
      if (n.done === true || text.length > 4096) break
      text += decoder.decode(n.value, { stream: true })
    }
  } catch { /* the reason is the status */ } finally {
    void Promise.resolve(it.return?.()).catch(() => {})
  }
  let message = text.slice(0, 512)
  let retryAfter: number | undefined
  try {
    const json = JSON.parse(text) as { error?: { message?: string } | string, retry_after_sec?: number }
    message = typeof json.error === 'string' ? json.error : json.error?.message ?? message
    retryAfter = typeof json.retry_after_sec === 'number' ? json.retry_after_sec : undefined
  } catch { /* not JSON */ }
  if (status === 429) return new QueueFullError(message !== '' ? message : 'queue full', retryAfter ?? 1)
  return new LlmeshError('RUNNER_FAILED', `runner answered ${status}: ${message}`)
}

async function sleep (ms: number, signal: Signal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
