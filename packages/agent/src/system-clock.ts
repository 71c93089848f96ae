import type { Clock } from '@llmesh/protocol'

/** The process's clock: Date.now and timers that do not keep the process alive. */
export const systemClock: Clock = {
  now: Date.now,
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (timer) => { clearTimeout(timer as NodeJS.Timeout | number | undefined) }
}
