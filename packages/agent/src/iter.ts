/**
 * Wraps an async iterable so `onDone` runs exactly once when the consumer finishes it, fails
 * in it, or abandons it, including when the consumer abandons it before the first `next()`
 * (an async generator's `finally` would not run then, and a counter would leak).
 */
export function withFinally<T> (source: AsyncIterable<T>, onDone: () => void): AsyncIterableIterator<T> {
  let it: AsyncIterator<T> | undefined
  let finished = false
  const finish = (): void => {
    if (finished) return
    finished = true
    onDone()
  }
  return {
    [Symbol.asyncIterator] () { return this },
    async next () {
      if (finished) return { done: true, value: undefined }
      it ??= source[Symbol.asyncIterator]()
      try {
        const r = await it.next()
        if (r.done === true) finish()
        return r
      } catch (err) {
        finish()
        throw err
      }
    },
    async return (value?: unknown) {
      finish()
      await it?.return?.()
      return { done: true, value: value as T }
    }
  }
}
