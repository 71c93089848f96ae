import type { Signal } from '@llmesh/protocol'

/**
 * The abort source of one request (client gone, runner timed out): an AbortController and its
 * signal in one object, for the request path only.
 *
 * Why not AbortController: on Node 20 every AbortSignal outlives the young-generation GC, however
 * short its life (measured: 2,000,000 signals made and dropped at once, 3-5 MB promoted to the
 * old generation per scavenge and 42-55 full mark-compacts, where the same number of plain
 * objects or EventTargets promoted nothing and needed none; Node 22 and 24 promote none). Two
 * per request made an agent in front of a fast runner run a full GC every 1-2 s, and the
 * requests it caught were the slowest ones (the runs of slow requests and the full GCs lined up).
 * Listeners run once, in the order added; the ones added after the abort never run, as with
 * AbortSignal.
 */
export class Abort implements Signal {
  aborted = false
  reason: unknown = undefined
  private listeners: Array<() => void> | undefined

  /** The signal side, as AbortController has it: the same object. */
  get signal (): Signal { return this }

  abort (reason?: unknown): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = reason ?? new DOMException('This operation was aborted', 'AbortError')
    const listeners = this.listeners
    this.listeners = undefined
    if (listeners == null) return
    // every listener runs, as with AbortSignal; the first one that threw is thrown after them
    let failed: { err: unknown } | undefined
    for (const listener of listeners) {
      try {
        listener()
      } catch (err) {
        failed ??= { err }
      }
    }
    if (failed != null) throw failed.err
  }

  addEventListener (type: 'abort', listener: () => void): void {
    if (this.aborted) return
    (this.listeners ??= []).push(listener)
  }

  removeEventListener (type: 'abort', listener: () => void): void {
    const i = this.listeners?.indexOf(listener) ?? -1
    if (i >= 0) this.listeners!.splice(i, 1)
  }
}

/**
 * A real AbortSignal that follows `signal`, for an API that takes nothing else (libp2p, the
 * embedded llama.cpp); an AbortSignal is passed as it is. `release` stops the following.
 */
export function abortSignalOf (signal: Signal): { signal: AbortSignal, release: () => void } {
  if (signal instanceof AbortSignal) return { signal, release: () => {} }
  const ac = new AbortController()
  if (signal.aborted) {
    ac.abort(signal.reason)
    return { signal: ac.signal, release: () => {} }
  }
  const follow = (): void => { ac.abort(signal.reason) }
  signal.addEventListener('abort', follow)
  return { signal: ac.signal, release: () => { signal.removeEventListener('abort', follow) } }
}
