/**
 * The one backoff of llmesh: attempt n waits at most
 *
 *     cap(n) = min(maxMs, baseMs x factor^(n-1))        (n = 1 for the first attempt)
 *
 * and the delay is drawn from that cap by the jitter its use asks for. Each use keeps its
 * parameters as named constants in its own package:
 *
 * - runner restarts (`@llmesh/runners`, DEFAULT_RESTART_*): jitter a fraction, cap x (1 ± j):
 *   one supervisor per runner; a little spread keeps runners that crashed together apart;
 * - dispatch retries (`@llmesh/scheduler`, BACKOFF_*): full jitter, uniform in [0, cap): the
 *   routers that saw the same failure at the same moment spread the most (AWS architecture
 *   blog, "Exponential Backoff And Jitter"), and the mean, cap/2, still grows exponentially;
 * - redials and probes (`@llmesh/mesh`, RECONNECT_*): no jitter: redials are per peer pair,
 *   there is no crowd to spread.
 */

/** Growth of the cap per attempt when a use names none: doubling. @default 2 */
export const BACKOFF_FACTOR = 2

/**
 * How a delay is drawn from its cap:
 * - `'none'`: the cap itself (no random draw);
 * - `'full'`: uniform in [0, cap), rounded down (one random draw);
 * - a fraction j: cap x (1 + j x (2r - 1)), i.e. uniform in cap x [1 - j, 1 + j], rounded, never
 *   below 0 (one random draw, also when j is 0).
 */
export type Jitter = 'none' | 'full' | number

export interface BackoffInit {
  /** cap of the first attempt, ms */
  baseMs: number
  /** largest cap, ms */
  maxMs: number
  /** growth of the cap per attempt. @default BACKOFF_FACTOR (2) */
  factor?: number
  /** how the delay is drawn from the cap. @default 'none' */
  jitter?: Jitter
}

/**
 * The cap of attempt number `attempt` (1 = the first; below 1 counts as 1):
 * min(maxMs, baseMs x factor^(attempt-1)), ms. Negative bounds count as 0.
 */
export function backoffCap (attempt: number, init: BackoffInit): number {
  const base = Math.max(0, init.baseMs)
  const max = Math.max(0, init.maxMs)
  const n = Math.max(1, Math.floor(attempt))
  // factor^(n-1) overflows to Infinity for huge n; min() takes care of it
  return Math.min(max, base * (init.factor ?? BACKOFF_FACTOR) ** (n - 1))
}

/**
 * The delay before attempt number `attempt` (1 = the first), ms: its cap (backoffCap) drawn
 * from by `init.jitter`. `random` returns floats in [0, 1) (tests inject a seeded one).
 */
export function backoffDelay (attempt: number, init: BackoffInit, random: () => number = Math.random): number {
  const cap = backoffCap(attempt, init)
  const jitter = init.jitter ?? 'none'
  if (jitter === 'none') return cap
  if (jitter === 'full') return Math.floor(Math.min(Math.max(random(), 0), 1 - Number.EPSILON) * cap)
  return Math.max(0, Math.round(cap * (1 + jitter * (2 * random() - 1))))
}
