/** What `tap` calls while a stream passes through. */
export interface TapHooks<T> {
  /** every chunk, before the consumer gets it */
  chunk?: (chunk: T) => void
  /** the source ended normally */
  complete?: () => void
  /** the source failed; the returned error is what the consumer sees (default: the same) */
  fail?: (err: unknown) => unknown
  /** exactly once, however the stream ended: completed, failed or abandoned by the consumer */
  done?: () => void
}

/**
 * Passes a stream through, calling `hooks` on the way: one plain iterator object, no
 * generator per layer, because it sits on every token of every request. `first` is a result
 * already read from `source` (the router reads the first chunk before it commits to a target).
 * `done` also runs when the consumer abandons the stream before its first read (an async
 * generator's `finally` would not run then, and a slot or claim would leak).
 */
export function tap<T> (source: AsyncIterable<T> | AsyncIterator<T>, hooks: TapHooks<T>, first?: IteratorResult<T>): AsyncIterableIterator<T> {
  let it: AsyncIterator<T> | undefined = Symbol.asyncIterator in source ? undefined : source
  let pending = first
  let finished = false
  const finish = (): void => {
    if (finished) return
    finished = true
    hooks.done?.()
  }
  return {
    [Symbol.asyncIterator] () { return this },
    async next (): Promise<IteratorResult<T>> {
      if (finished) return { done: true, value: undefined }
      let r: IteratorResult<T>
      if (pending != null) {
        r = pending
        pending = undefined
      } else {
        it ??= (source as AsyncIterable<T>)[Symbol.asyncIterator]()
        try {
          r = await it.next()
        } catch (err) {
          const seen = hooks.fail != null ? hooks.fail(err) : err
          finish()
          throw seen
        }
      }
      if (r.done === true) {
        hooks.complete?.()
        finish()
      } else {
        hooks.chunk?.(r.value)
      }
      return r
    },
    async return (value?: unknown): Promise<IteratorResult<T>> {
      const wasFinished = finished
      finish()
      // never await the source: a stalled upstream's return() waits for the read it is stuck in
      if (!wasFinished) void Promise.resolve(it?.return?.()).catch(() => {})
      return { done: true, value: value as T }
    }
  }
}
