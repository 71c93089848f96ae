import { BusyError, LlmeshError, QueueFullError, toLlmeshError, type Clock, type InferPath, type Logger, type Signal } from '@llmesh/protocol'
import {
  Dispatch, Dispatcher, type AttemptFailure, type Claims, type DispatchView, type Failure, type PeerHealth, type RetryBudget, type Strategy
} from '@llmesh/scheduler'
import type { Forwarded, Forwarder } from './forwarders.js'
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
  /** prompt tokens, estimated: what a cache hit saves (with prefixKey) */
  promptTokens?: number
  /** clock time (the router's clock) after which the request may no longer wait for a slot */
  deadline: number
  signal: Signal
  /** start the model even where it does not fit a host's model memory */
  loadAnyway?: boolean
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
  /** rounds the dispatch took, this one included (see DoneAction) */
  attempts: number
}

/** What the router routes on, one snapshot per round: the agent implements it once. */
export interface DispatchViewSource {
  /** the mesh as of `now` (the router's clock) */
  dispatchView: (now: number) => DispatchView
}

export interface RouterComponents {
  view: DispatchViewSource
  /** this host's runners */
  local: Forwarder
  /** the peers' runners */
  remote: Forwarder
  defaultStrategy: Strategy
  /**
   * context a cold start or a split is planned for, tokens, when the request names none: this
   * agent's runners' (the hosts of one mesh usually share a config). @default the scheduler's
   */
  ctxSize?: number
  logger: Logger
  clock: Clock
  /** @default Math.random */
  random?: () => number
  /** called whenever this router's claims change, so they reach other routers at once */
  onClaimsChange?: () => void
}

const SERVED = { kind: 'served' } as const
const WAITED = { kind: 'waited' } as const

/**
 * The entry side of every request: runs the scheduler's `Dispatch` (which hosts, in which
 * order, when to queue, retry or give up) and carries out what it says: claims the target
 * (gossiped so other routers see it), forwards, sleeps a backoff, or throws. Nothing goes to
 * the client before the target's first chunk, so until then a failure can move on. The
 * committed stream reports its outcome to the router's health at its end.
 */
export class Router {
  readonly claims: Claims
  readonly health: PeerHealth
  readonly budget: RetryBudget
  private readonly d: Dispatcher
  private readonly c: RouterComponents

  constructor (components: RouterComponents) {
    this.c = components
    this.d = new Dispatcher({ random: components.random ?? Math.random, defaultStrategy: components.defaultStrategy })
    this.claims = this.d.claims
    this.health = this.d.health
    this.budget = this.d.budget
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
    const { clock, view } = this.c
    const m = new Dispatch(this.d)
    let action = m.start(this.c.ctxSize != null ? { ...req, ctxSize: this.c.ctxSize } : req, view.dispatchView(clock.now()))
    for (;;) {
      if (action.kind === 'wait') {
        await sleep(clock, action.ms, signal)
        action = m.next(WAITED, view.dispatchView(clock.now()))
        continue
      }
      if (signal.aborted) throw signal.reason
      if (action.kind === 'fail') throw action.retryAfterSec != null ? new QueueFullError(action.message, action.retryAfterSec) : new LlmeshError(action.code, action.message)
      const t = action.target
      const release = this.claim(t.peerId)
      const started = clock.now()
      let res: Forwarded
      let it: AsyncIterator<Uint8Array>
      let first: IteratorResult<Uint8Array>
      try {
        res = await (t.local ? this.c.local : this.c.remote).forward(t, { id: req.id, path: req.path, model: req.model, body: req.body, priority: req.priority, mayQueue: action.mayQueue, deadline: req.deadline, signal, ...(req.loadAnyway === true ? { loadAnyway: true } : {}), ...(req.prefixKey != null ? { prefixKey: req.prefixKey } : {}) })
        it = res.body[Symbol.asyncIterator]()
        // nothing goes to the client before the first chunk: until then a failure can move on
        first = await it.next()
      } catch (err) {
        release()
        const e = toLlmeshError(err, 'PEER_UNREACHABLE')
        const failure = failureOf(err, signal)
        this.c.logger.debug({ reqId: req.id, target: t.peerId, failure, err: e.message }, 'forward failed')
        // the machine hears of every failure (it keeps the hosts' health), an abort included,
        // which ends the request with the client's own reason
        action = m.next(attemptFailure(e, failure), view.dispatchView(clock.now()))
        if (failure === 'aborted') throw signal.reason ?? e
        continue
      }
      const firstMs = clock.now() - started
      const done = m.next(SERVED)
      this.c.logger.debug({ reqId: req.id, target: t.peerId, attempt: done.attempts, firstMs }, 'routed')
      return {
        status: res.status,
        contentType: res.contentType,
        target: { peerId: t.peerId, runnerId: res.runnerId, local: t.local, reasons: done.reasons },
        attempts: done.attempts,
        body: this.observe(t.peerId, first, it, res, firstMs, signal, release)
      }
    }
  }

  /**
   * The committed stream: reports its outcome (latency, tokens/s, or how it failed) at its end,
   * then releases the claim. The token rate is scanned here only when the forwarder did not
   * (a peer's stream); a local runner's body was scanned once on its way through admission.
   */
  private observe (peerId: string, first: IteratorResult<Uint8Array>, it: AsyncIterator<Uint8Array>, res: Forwarded, firstMs: number, signal: Signal, release: () => void): AsyncIterableIterator<Uint8Array> {
    const { status } = res
    const own = res.rate == null ? new TokenRateScanner() : undefined
    const rate = res.rate ?? own!
    return tap(it, {
      chunk: own != null ? (chunk) => { own.scan(chunk) } : undefined,
      complete: () => {
        if (status < 400) this.health.report(peerId, { ok: true, firstTokenMs: firstMs, ...(rate.tokensPerSec != null ? { tokensPerSec: rate.tokensPerSec } : {}) }, this.c.clock.now())
      },
      fail: (err) => {
        this.health.report(peerId, { ok: false, failure: failureOf(err, signal) }, this.c.clock.now())
        return err
      },
      done: release
    }, first)
  }
}

/** A failed attempt as the machine takes it: the error's code and what BUSY and QUEUE_FULL carry. */
function attemptFailure (e: LlmeshError, failure: Failure): AttemptFailure {
  return {
    kind: 'failed',
    failure,
    code: e.code,
    message: e.message,
    ...(e instanceof QueueFullError ? { retryAfterSec: e.retryAfterSec } : {}),
    ...(e instanceof BusyError && e.admission != null ? { admission: e.admission } : {})
  }
}

async function sleep (clock: Clock, ms: number, signal: Signal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = clock.setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clock.clearTimeout(timer); reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
