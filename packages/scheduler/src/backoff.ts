import { BACKOFF_BASE_MS, BACKOFF_MAX_MS } from './constants.js'

export interface BackoffInit {
  /** cap of the first retry's delay, ms. @default 50 ms */
  baseMs?: number
  /** largest cap, ms. @default 2000 ms */
  maxMs?: number
}

/** The upper bound of retry `attempt`'s delay: min(maxMs, baseMs x 2^(attempt-1)), ms. */
export function backoffCap (attempt: number, init: BackoffInit = {}): number {
  const base = Math.max(0, init.baseMs ?? BACKOFF_BASE_MS)
  const max = Math.max(0, init.maxMs ?? BACKOFF_MAX_MS)
  const n = Math.max(1, Math.floor(attempt))
  // 2^(n-1) overflows to Infinity for huge n; min() takes care of it
  return Math.min(max, base * 2 ** (n - 1))
}

/**
 * Delay before retry number `attempt` (1 = the first retry), ms: exponential backoff with full
 * jitter (AWS architecture blog, "Exponential Backoff And Jitter"): uniform in
 * [0, backoffCap(attempt)). Full jitter rather than "cap/2 + jitter" because it spreads
 * the routers that saw the same failure at the same moment the most; the mean (cap/2) is still
 * exponential. `random` is injected, in [0, 1).
 */
export function backoff (attempt: number, random: () => number, init: BackoffInit = {}): number {
  const cap = backoffCap(attempt, init)
  const r = Math.min(Math.max(random(), 0), 1 - Number.EPSILON)
  return Math.floor(r * cap)
}
