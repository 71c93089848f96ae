import type { Clock } from '@llmesh/protocol'

/**
 * The stream pipeline's real clock: `now()` on the epoch's scale with performance.now's
 * resolution (a window of a few ms needs better than Date.now's whole milliseconds, and it never
 * goes back), timers that do not keep the process alive.
 */
export const streamClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  setTimeout: (fn, ms) => {
    const timer = setTimeout(fn, ms)
    timer.unref()
    return timer
  },
  clearTimeout: (timer) => { clearTimeout(timer as NodeJS.Timeout | undefined) }
}
