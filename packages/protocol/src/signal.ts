/**
 * What the request path needs of an abort signal: whether and why it fired, and a callback when
 * it does. A real AbortSignal is one; so is `Abort` (@llmesh/kit).
 */
export interface Signal {
  readonly aborted: boolean
  readonly reason: unknown
  addEventListener: (type: 'abort', listener: () => void, options?: { once?: boolean }) => void
  removeEventListener: (type: 'abort', listener: () => void) => void
}
