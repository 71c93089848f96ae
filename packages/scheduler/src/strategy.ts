import { DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY } from './constants.js'

/**
 * Routing strategies. ONLY APPEND TO THIS LIST: names travel in config files and in the
 * `x-llmesh-strategy` request header.
 * - performance: lowest expected completion time (latency and tokens/s EWMAs, success rate,
 *   free slots and queue, VRAM headroom, loaded vs cold, locality, priority); the default
 * - least-loaded: lowest (in-flight + claims) / slots
 * - round-robin: each host in turn, per model
 * - fastest: best measured speed (first-token latency + decode time), load ignored
 * - random: uniform choice
 * - prefix-affinity: the same conversation goes to the same host (whose KV cache holds its
 *   prefix), by rendezvous hashing; performance when that host is saturated
 */
export const STRATEGIES = ['performance', 'least-loaded', 'round-robin', 'fastest', 'random', 'prefix-affinity'] as const
export type Strategy = typeof STRATEGIES[number]

/** @default 'performance' */
export const DEFAULT_STRATEGY: Strategy = 'performance'

export function isStrategy (value: unknown): value is Strategy {
  return typeof value === 'string' && (STRATEGIES as readonly string[]).includes(value)
}

/** Clamps any number into the priority range; NaN becomes DEFAULT_PRIORITY. */
export function clampPriority (value: number | undefined): number {
  if (value == null || Number.isNaN(value)) return DEFAULT_PRIORITY
  return Math.min(MAX_PRIORITY, Math.max(MIN_PRIORITY, value))
}
