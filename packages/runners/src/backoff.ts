import {
  DEFAULT_RESTART_FACTOR,
  DEFAULT_RESTART_JITTER,
  DEFAULT_RESTART_MAX_DELAY_MS,
  DEFAULT_RESTART_MIN_DELAY_MS
} from './constants.js'

export interface BackoffOptions {
  /** first delay, ms. @default 500 */
  minDelayMs?: number
  /** cap, ms. @default 60000 */
  maxDelayMs?: number
  /** growth per attempt. @default 2 */
  factor?: number
  /** fraction of random spread, delay * (1 ± jitter). @default 0.2 */
  jitter?: number
}

/**
 * Delay before restart number `attempt` (0-based):
 * `min(maxDelayMs, minDelayMs * factor^attempt) * (1 + jitter * (2 * random() - 1))`.
 */
export function backoffDelay (attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const min = opts.minDelayMs ?? DEFAULT_RESTART_MIN_DELAY_MS
  const max = opts.maxDelayMs ?? DEFAULT_RESTART_MAX_DELAY_MS
  const factor = opts.factor ?? DEFAULT_RESTART_FACTOR
  const jitter = opts.jitter ?? DEFAULT_RESTART_JITTER
  const base = Math.min(max, min * Math.pow(factor, Math.max(0, attempt)))
  return Math.max(0, Math.round(base * (1 + jitter * (2 * random() - 1))))
}
