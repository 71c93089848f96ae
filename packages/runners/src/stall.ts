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

const STALL = Symbol('stall')

/**
 * Wraps a response body so that a stream that produces no chunk in time is aborted with a
 * clear `STALLED` error instead of hanging its client. The upstream request is aborted through
 * `abort` (its pending read then rejects), so nothing keeps running behind the error.
 */
export async function * watchStalls<T> (source: AsyncIterable<T>, opts: StallWatchOptions): AsyncGenerator<T, void, undefined> {
  const it = source[Symbol.asyncIterator]()
  let first = true
  let settled = false
  let finished = false
  try {
    while (true) {
      const ms = first ? opts.firstChunkMs : opts.gapMs
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<typeof STALL>((resolve) => { timer = setTimeout(() => { resolve(STALL) }, ms) })
      let next: IteratorResult<T> | typeof STALL
      try {
        next = await Promise.race([it.next(), timeout])
      } catch (err) {
        throw opts.mapError != null ? opts.mapError(err) : err
      } finally {
        clearTimeout(timer)
      }
      if (next === STALL) {
        const err = new LlmeshError('STALLED', `${opts.label} produced no ${first ? 'response' : 'token'} for ${ms} ms; the request was aborted`)
        settled = true
        opts.abort(err)
        opts.onStall?.()
        throw err
      }
      if (next.done === true) {
        finished = true
        opts.onComplete?.()
        return
      }
      first = false
      yield next.value
    }
  } finally {
    if (!finished && !settled) opts.abort(new Error('response reader stopped'))
    // never await: a stalled upstream's return() would wait for the read it is stuck in
    void Promise.resolve(it.return?.()).catch(() => {})
    opts.onSettled?.()
  }
}
