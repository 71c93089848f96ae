import type { Clock, TimerHandle } from '@llmesh/protocol'
import { streamClock } from './clock.js'

/**
 * Where a coalesced stream goes: a peer's infer stream, a client's HTTP response, the queue a
 * paced reader's consumer takes from. Each layer has one small adapter that implements it.
 */
export interface Sink {
  /**
   * Takes one batch. False when the sink holds as much as it should: the writer then waits for
   * `drained()` before it writes more (it may have written this batch already; nothing is lost).
   */
  write: (batch: Uint8Array) => boolean
  /**
   * Resolves true once the sink takes writes again, or its consumer went away (the next write
   * finds out); false when the consumer read nothing for the sink's stall bound, after which the
   * writer gives up the stream.
   */
  drained: () => Promise<boolean>
}

/**
 * The write-stall bound of a sink's `drained()`: resolves true when `listen`'s `wake` is called
 * (the sink drained, or closed), false when it was not within `stallMs`. `listen` subscribes
 * `wake` to the sink's events and returns the unsubscribe. A timer exists only while a consumer
 * holds its sink full, the rare path, so the common path pays for none.
 */
export async function drainedWithin (stallMs: number, listen: (wake: () => void) => () => void, clock: Clock = streamClock): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    let settled = false
    let unsubscribe: (() => void) | undefined
    let timer: TimerHandle | undefined
    const settle = (ok: boolean): void => {
      if (settled) return
      settled = true
      clock.clearTimeout(timer)
      unsubscribe?.()
      resolve(ok)
    }
    timer = clock.setTimeout(() => { settle(false) }, stallMs)
    unsubscribe = listen(() => { settle(true) })
    // woken while subscribing: the listeners went in after settle() ran
    if (settled) unsubscribe()
  })
}
