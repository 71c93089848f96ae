import { LlmeshError } from '@llmesh/protocol'
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

/**
 * Reads a strategy name from a header or config value. Absent or empty gives `fallback`;
 * case and surrounding blanks are ignored; an unknown name throws INVALID_REQUEST naming the
 * valid ones (the HTTP layer answers 400).
 */
export function parseStrategy (value: string | readonly string[] | null | undefined, fallback: Strategy = DEFAULT_STRATEGY): Strategy {
  if (Array.isArray(value)) {
    if (value.length > 1) throw new LlmeshError('INVALID_REQUEST', 'x-llmesh-strategy given more than once')
    value = value[0]
  }
  if (value == null) return fallback
  const name = (value as string).trim().toLowerCase()
  if (name === '') return fallback
  if (isStrategy(name)) return name
  throw new LlmeshError('INVALID_REQUEST', `unknown routing strategy '${String(value).slice(0, 64)}'; valid strategies: ${STRATEGIES.join(', ')}`)
}

/**
 * Reads a request priority (header `x-llmesh-priority` or a body field): an integer 0-10,
 * higher is served first. Absent or empty gives DEFAULT_PRIORITY; anything else throws
 * INVALID_REQUEST.
 */
export function parsePriority (value: string | number | readonly string[] | null | undefined, fallback: number = DEFAULT_PRIORITY): number {
  if (Array.isArray(value)) {
    if (value.length > 1) throw new LlmeshError('INVALID_REQUEST', 'priority given more than once')
    value = value[0]
  }
  if (value == null) return fallback
  const text = String(value).trim()
  if (text === '') return fallback
  const n = Number(text)
  if (!Number.isInteger(n) || n < MIN_PRIORITY || n > MAX_PRIORITY) {
    throw new LlmeshError('INVALID_REQUEST', `priority must be an integer from ${MIN_PRIORITY} to ${MAX_PRIORITY}, got '${text.slice(0, 32)}'`)
  }
  return n
}

/** Clamps any number into the priority range; NaN becomes DEFAULT_PRIORITY. */
export function clampPriority (value: number | undefined): number {
  if (value == null || Number.isNaN(value)) return DEFAULT_PRIORITY
  return Math.min(MAX_PRIORITY, Math.max(MIN_PRIORITY, value))
}
