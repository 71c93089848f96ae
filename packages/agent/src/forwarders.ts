import { LlmeshError, QueueFullError, type Clock, type InferPath, type InferRequest, type Signal } from '@llmesh/protocol'
import type { InferResponse, InferTimeouts } from '@llmesh/mesh'
import { DEFAULT_FIRST_TOKEN_TIMEOUT_MS, DEFAULT_NON_STREAM_TIMEOUT_MS, type Runner } from '@llmesh/runners'
import type { LocalServing, ServeOptions } from './serving.js'

/** The host and runner a request goes to (a scheduler RankedTarget is one). */
export interface ForwardTarget {
  peerId: string
  /** the runner the router chose; the target may use another of the same model */
  runnerId: string
  /** the model is not ready there yet: the target starts it, or waits for its start */
  cold?: boolean
}

/** What the router asks one target to do. */
export interface ForwardOptions {
  id: string
  path: InferPath
  model: string
  body: Record<string, unknown>
  priority: number
  mayQueue: boolean
  /** clock time after which the request may no longer wait for a slot (or for its model to load) */
  deadline: number
  signal: Signal
  /** start the model even where it does not fit the host's model memory */
  loadAnyway?: boolean
  /** the conversation's key: the serving host remembers it holds its cache */
  prefixKey?: string
}

/** A target's answer, before anything went to the client. */
export interface Forwarded {
  status: number
  contentType: string
  runnerId: string
  body: AsyncIterable<Uint8Array>
  /**
   * The token rate read from `body` on its way here, when this process already scans it (the
   * local runners, for the host's served figures): the router reads it instead of scanning
   * the same bytes again. Unset from a peer.
   */
  rate?: { readonly tokensPerSec: number | undefined }
}

/**
 * One way to reach targets. `forward` resolves once the target's head is in, with a status the
 * request may commit to; BUSY, QUEUE_FULL, DEADLINE_EXCEEDED, a runner's 5xx and every failure
 * to reach the target reject with an LlmeshError, so that the router can move on.
 */
export interface Forwarder {
  forward: (target: ForwardTarget, opts: ForwardOptions) => Promise<Forwarded>
}

export interface LocalForwarderInit {
  /** admission and served-request figures of this host's runners */
  serving: LocalServing
  /**
   * this host's runners as placement sees them: `find` the ready runner of a model (`load` ranks
   * them, here by their admission), `has` a model on disk, `ensure` it started (see Placements)
   */
  runners: {
    find: (model: string, preferred: string | undefined, load: (runner: Runner) => number) => Runner | undefined
    has: (model: string) => boolean
    ensure: (model: string, opts: { signal: Signal, deadline: number, loadAnyway: boolean, reason: 'request' }) => Promise<void>
  }
}

/** This host's runners, behind their admission (see LocalServing). */
export class LocalForwarder implements Forwarder {
  private readonly serving: LocalServing
  private readonly runners: LocalForwarderInit['runners']
  /** the router may send one request here more than once (queueing after a busy answer): ids stay unique */
  private seq = 0

  constructor (init: LocalForwarderInit) {
    this.serving = init.serving
    this.runners = init.runners
  }

  async forward (target: ForwardTarget, opts: ForwardOptions): Promise<Forwarded> {
    const res = await this.serve(opts.model, target.runnerId, opts.path, opts.body, {
      id: `self:${opts.id}:${++this.seq}`, priority: opts.priority, mayQueue: opts.mayQueue, deadline: opts.deadline, signal: opts.signal, loadAnyway: opts.loadAnyway === true, ...(opts.prefixKey != null ? { prefixKey: opts.prefixKey } : {})
    })
    if (isErrorHead(res.status)) throw await statusError(res.status, res.body)
    return res
  }

  /**
   * Runs one request, this router's or a peer's, on a ready runner of `model` here (`runnerId`
   * preferred) once admission gives it a slot; the head is passed on whatever its status. A
   * model this host has on disk but does not run yet is started first (or its start in progress
   * joined): the wait counts against the request's deadline.
   */
  async serve (model: string, runnerId: string | undefined, path: InferPath, body: Record<string, unknown>, opts: ServeOptions & { loadAnyway?: boolean }): Promise<Forwarded> {
    let runner = this.runners.find(model, runnerId, this.serving.load)
    if (runner == null && this.runners.has(model)) {
      await this.runners.ensure(model, { signal: opts.signal, deadline: opts.deadline, loadAnyway: opts.loadAnyway === true, reason: 'request' })
      runner = this.runners.find(model, undefined, this.serving.load)
    }
    if (runner == null) throw new LlmeshError('NO_CAPACITY', `no ready runner for '${model}' on this host`)
    const res = await this.serving.serve(runner, path, body, opts)
    return { ...res, runnerId: runner.id }
  }
}

export interface PeerForwarderInit {
  /** sends a request to a peer over `/llmesh/infer/1` (the mesh's `infer`) */
  mesh: { infer: (peerId: string, request: InferRequest, signal?: Signal, timeouts?: InferTimeouts) => Promise<InferResponse> }
  /** silence bounds on a peer: before its first frame, and between two frames, ms */
  limits: { headTimeoutMs: number, frameGapMs: number }
  /** the runners' first-token bound of a streaming request. @default DEFAULT_FIRST_TOKEN_TIMEOUT_MS */
  firstTokenTimeoutMs?: number
  clock: Pick<Clock, 'now'>
}

/** The peers' runners, over `/llmesh/infer/1` streams. */
export class PeerForwarder implements Forwarder {
  private readonly c: PeerForwarderInit

  constructor (init: PeerForwarderInit) {
    this.c = init
  }

  async forward (target: ForwardTarget, opts: ForwardOptions): Promise<Forwarded> {
    const remote = await this.c.mesh.infer(target.peerId, {
      id: opts.id,
      path: opts.path,
      model: opts.model,
      runnerId: target.runnerId,
      body: opts.body,
      priority: opts.priority,
      mayQueue: opts.mayQueue,
      // relative: peers' clocks differ
      deadlineMs: Math.max(0, Math.round(opts.deadline - this.c.clock.now())),
      ...(opts.loadAnyway === true ? { loadAnyway: true } : {}),
      ...(opts.prefixKey != null ? { prefixKey: opts.prefixKey } : {})
    }, opts.signal, this.timeouts(opts, target.cold === true))
    if (isErrorHead(remote.head.status)) throw await statusError(remote.head.status, remote.body)
    return { status: remote.head.status, contentType: remote.head.contentType, runnerId: remote.head.runnerId, body: remote.body }
  }

  /**
   * How long this agent waits on a peer for one forwarded request: silence bounds from
   * `limits`, and for the first token what an honest host may take (its queue wait when the
   * request may queue or its model has to load first, then its runner's own first-token
   * bound), plus one silence bound.
   */
  private timeouts (opts: ForwardOptions, cold: boolean): InferTimeouts {
    const { limits } = this.c
    const runnerFirst = opts.body['stream'] === true ? this.c.firstTokenTimeoutMs ?? DEFAULT_FIRST_TOKEN_TIMEOUT_MS : DEFAULT_NON_STREAM_TIMEOUT_MS
    const queueWait = opts.mayQueue || cold ? Math.max(0, opts.deadline - this.c.clock.now()) : 0
    return { headMs: limits.headTimeoutMs, gapMs: limits.frameGapMs, firstTokenMs: queueWait + runnerFirst + limits.headTimeoutMs }
  }
}

/** A head nothing may be committed to: a runner's 5xx (501, not supported, is the client's), or an older peer's 429. */
function isErrorHead (status: number): boolean {
  return status === 429 || (status >= 500 && status !== 501)
}

/**
 * A 5xx head from a target (its runner's error), or the 429 head with which a peer older than
 * QUEUE_FULL's ERROR frame answers a full queue, read into an error (the body is small JSON).
 */
async function statusError (status: number, body: AsyncIterable<Uint8Array>): Promise<LlmeshError> {
  const it = body[Symbol.asyncIterator]()
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
