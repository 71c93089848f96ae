import type { Clock, ErrorCode } from '@llmesh/protocol'
import { LlmeshError } from '@llmesh/protocol'
import type { DispatchRequest, RoutedResponse } from './router.js'

/**
 * One request this agent took on its API, once it ended: what the dashboard shows flowing and
 * what the Prometheus metrics count. Prompts never appear; `id` is for the dashboard only
 * (metrics must not label by it: unbounded).
 */
export interface RequestEvent {
  id: string
  model: string
  /** the strategy that routed it (the request's, else the agent's default) */
  strategy: string
  /** this agent's peer id: the entry */
  entry: string
  /** the host that served it (the last tried), when one did */
  target?: string
  /** served by this host's own runner */
  local: boolean
  outcome: 'ok' | 'error' | 'aborted'
  /** the error's code, when it ended with one */
  code?: ErrorCode
  /** ms from the request to its response's first chunk (time to first token for a stream), when it came */
  ttftMs?: number
  /** ms from the request to its end */
  durationMs: number
  /** routing rounds: 1, or more after failovers and waits */
  attempts: number
  /** why the target was chosen (x-llmesh-route's reasons) */
  reasons: string[]
  /** when it ended, ms since the epoch */
  at: number
}

export type RequestListener = (e: RequestEvent) => void

/**
 * The agent's request events: `observe` wraps one routed request so that its end, however it
 * comes (the last chunk, an error, the client gone), is told once to every listener; without
 * listeners a request is not wrapped at all. A listener that throws breaks nothing: its error
 * is swallowed.
 */
export class RequestEvents {
  private readonly listeners = new Set<RequestListener>()

  constructor (private readonly c: { clock: Clock, self: () => string, defaultStrategy: string }) {}

  on (fn: RequestListener): () => void {
    this.listeners.add(fn)
    return () => { this.listeners.delete(fn) }
  }

  /** Routes `req` with `dispatch`, telling its end to the listeners. */
  async observe (req: DispatchRequest, dispatch: (req: DispatchRequest) => Promise<RoutedResponse>): Promise<RoutedResponse> {
    if (this.listeners.size === 0) return await dispatch(req)
    const { clock } = this.c
    const t0 = clock.now()
    const base = { id: req.id, model: req.model, strategy: req.strategy ?? this.c.defaultStrategy, entry: this.c.self() }
    let res: RoutedResponse
    try {
      res = await dispatch(req)
    } catch (err) {
      this.emit({ ...base, local: false, ...ended(err, req), durationMs: clock.now() - t0, attempts: 1, reasons: [], at: clock.now() })
      throw err
    }
    const ttftMs = clock.now() - t0
    const served = { ...base, target: res.target.peerId, local: res.target.local, ttftMs, attempts: res.attempts, reasons: res.target.reasons }
    const inner = res.body
    const emit = (end: Pick<RequestEvent, 'outcome' | 'code'>): void => {
      const now = clock.now()
      this.emit({ ...served, ...end, durationMs: now - t0, at: now })
    }
    async function * body (): AsyncGenerator<Uint8Array> {
      let end: Pick<RequestEvent, 'outcome' | 'code'> = { outcome: 'aborted' }
      try {
        for await (const chunk of inner) yield chunk
        end = { outcome: 'ok' }
      } catch (err) {
        end = ended(err, req)
        throw err
      } finally {
        emit(end)
      }
    }
    return { ...res, body: body() }
  }

  private emit (e: RequestEvent): void {
    for (const fn of this.listeners) {
      try { fn(e) } catch { /* a listener's failure is its own */ }
    }
  }
}

function ended (err: unknown, req: DispatchRequest): Pick<RequestEvent, 'outcome' | 'code'> {
  if (req.signal.aborted) return { outcome: 'aborted' }
  return { outcome: 'error', ...(err instanceof LlmeshError ? { code: err.code } : {}) }
}
