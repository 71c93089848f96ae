import { z } from 'zod'
import { QUEUE_CAPACITY, QUEUE_DEADLINE_MS } from './constants.js'
import { DEFAULT_STRATEGY, STRATEGIES } from './strategy.js'

/**
 * The scheduler's part of a host's configuration, as zod schemas with this package's named
 * defaults; `@llmesh/agent` composes them into its config schema and validates once, at start.
 */

/** Routing strategy when a request names none (`x-llmesh-strategy`). @default DEFAULT_STRATEGY */
export const StrategyConfigSchema = z.enum(STRATEGIES).default(DEFAULT_STRATEGY)

/** Admission on this host: requests beyond the runners' slots wait in a priority queue. */
export const QueueConfigSchema = z.strictObject({
  /** requests waiting per runner beyond its busy slots; more are answered 429. @default QUEUE_CAPACITY (64) */
  capacity: z.number().int().min(0).max(100_000).default(QUEUE_CAPACITY),
  /**
   * longest wait for a slot when the request sets no `x-llmesh-deadline-ms`, ms; a request
   * still queued then is answered 504 DEADLINE_EXCEEDED. @default QUEUE_DEADLINE_MS (120000 ms)
   */
  deadlineMs: z.number().int().positive().default(QUEUE_DEADLINE_MS)
}).prefault({})
export type QueueConfig = z.infer<typeof QueueConfigSchema>
