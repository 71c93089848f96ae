import { LlmeshError } from '@llmesh/protocol'

export interface StallWatchOptions {
  /** longest wait for the first chunk, ms */
  firstChunkMs: number
  /** longest gap between two chunks after the first, ms */
  gapMs: number
  /** aborts the upstream request; called once, when a stall is detected or the reader stops early */
  abort: (reason: Error) => void
  /** names the runner in the error message */
  label: string
  /** called once when the stream stalled */
  onStall?: () => void
  /** called once when the stream ended normally (all chunks read) */
  onComplete?: () => void
  /** called once however the stream ended (complete, stalled, failed, reader stopped) */
  onSettled?: () => void
  /** turns an upstream error into the error the reader sees */
  mapError?: (err: unknown) => unknown
}

/**
 * Wraps a response body so that a stream that produces no chunk in time is aborted with a
 * clear `STALLED` error instead of hanging its client. The upstream request is aborted through
 * `abort` (its pending read then rejects), so nothing keeps running behind the error.
 *
 * Only time spent waiting for the upstream counts: a slow reader (a client applying
 * backpressure) is not a stall. One timer per stream, refreshed on each read, and no generator
 * or Promise.race per chunk: this sits on every token of every request.
 */
export function watchStalls<T> (source: AsyncIterable<T>, opts: StallWatchOptions): AsyncIterableIterator<T> {
  const it = source[Symbol.asyncIterator]()
  let first = true
  let ended = false
  let timer: NodeJS.Timeout | undefined
  /** rejects the read in progress; set only while waiting for the upstream */
  let failWaiting: ((err: unknown) => void) | undefined

  const end = (): void => {
    ended = true
    clearTimeout(timer)
    // never await: a stalled upstream's return() would wait for the read it is stuck in
    void Promise.resolve(it.return?.()).catch(() => {})
    opts.onSettled?.()
  }
  const onTimer = (): void => {
    const fail = failWaiting
    if (fail == null || ended) return // fired while the reader, not the upstream, was slow
    failWaiting = undefined
    const err = new LlmeshError('STALLED', `${opts.label} produced no ${first ? 'response' : 'token'} for ${first ? opts.firstChunkMs : opts.gapMs} ms; the request was aborted`)
    opts.abort(err)
    opts.onStall?.()
    end()
    fail(err)
  }

  return {
    [Symbol.asyncIterator] () { return this },
    async next (): Promise<IteratorResult<T>> {
      if (ended) return { done: true, value: undefined }
      if (timer == null) timer = setTimeout(onTimer, first ? opts.firstChunkMs : opts.gapMs)
      else timer.refresh()
      let r: IteratorResult<T>
      try {
        r = await new Promise<IteratorResult<T>>((resolve, reject) => {
          failWaiting = reject
          it.next().then(resolve, reject)
        })
      } catch (err) {
        if (ended) throw err // the stall error, or the reader stopped meanwhile
        failWaiting = undefined
        opts.abort(new Error('response reader stopped'))
        end()
        throw opts.mapError != null ? opts.mapError(err) : err
      }
      failWaiting = undefined
      if (ended) return { done: true, value: undefined }
      if (r.done === true) {
        opts.onComplete?.()
        end()
        return r
      }
      if (first) {
        first = false
        clearTimeout(timer)
        timer = undefined
      }
      return r
    },
    async return (value?: unknown): Promise<IteratorResult<T>> {
      if (!ended) {
        opts.abort(new Error('response reader stopped'))
        end()
      }
      return { done: true, value: value as T }
    }
  }
}
