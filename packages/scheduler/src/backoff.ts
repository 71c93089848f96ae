import { backoffCap as cap, backoffDelay, type BackoffInit as KitBackoffInit } from '@llmesh/kit'
import { BACKOFF_BASE_MS, BACKOFF_MAX_MS } from './constants.js'

/**
 * The dispatch retries' use of the one backoff (`@llmesh/kit`): doubling from BACKOFF_BASE_MS
 * to BACKOFF_MAX_MS, full jitter. Full rather than "cap/2 + jitter" because it spreads the
 * routers that saw the same failure at the same moment the most; the mean (cap/2) is still
 * exponential.
 */
export interface BackoffInit {
  /** cap of the first retry's delay, ms. @default BACKOFF_BASE_MS (50 ms) */
  baseMs?: number
  /** largest cap, ms. @default BACKOFF_MAX_MS (2000 ms) */
  maxMs?: number
}

function retryBackoff (init: BackoffInit): KitBackoffInit {
  return { baseMs: init.baseMs ?? BACKOFF_BASE_MS, maxMs: init.maxMs ?? BACKOFF_MAX_MS, jitter: 'full' }
}

/** The upper bound of retry `attempt`'s delay: min(maxMs, baseMs x 2^(attempt-1)), ms. */
export function backoffCap (attempt: number, init: BackoffInit = {}): number {
  return cap(attempt, retryBackoff(init))
}

/**
 * Delay before retry number `attempt` (1 = the first retry), ms: uniform in
 * [0, backoffCap(attempt)). `random` is injected, in [0, 1).
 */
export function backoff (attempt: number, random: () => number, init: BackoffInit = {}): number {
  return backoffDelay(attempt, retryBackoff(init), random)
}
