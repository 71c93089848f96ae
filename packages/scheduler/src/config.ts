import { z } from 'zod'
import {
  EVICT_DRAIN_MS, IDLE_UNLOAD_MS, PLACEMENT_MEMORY_SHARE, QUEUE_CAPACITY, QUEUE_DEADLINE_MS, SCALE_DOWN_AFTER_MS, SCALE_UP_AFTER_MS
} from './constants.js'
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

/** One pin from the config: keep `model` loaded on `host` (a peer id), or anywhere in the mesh. */
export const PinConfigSchema = z.strictObject({
  model: z.string().min(1).max(256),
  /** peer id of the host that keeps it, or "self" for the host whose config it is; absent = anywhere */
  host: z.string().min(1).max(128).optional()
})

/** Which host runs which model (see placement/): memory, overrides, idle and demand timings, pins. */
export const PlacementConfigSchema = z.strictObject({
  /**
   * memory this host gives to models, bytes. @default unset: the GPUs' total VRAM when there
   * are GPUs, else `memoryShare` of RAM (see hostModelMemBytes)
   */
  memoryBytes: z.number().int().nonnegative().max(2 ** 50).optional(),
  /** share of RAM models may take when memoryBytes is unset and there is no GPU. @default PLACEMENT_MEMORY_SHARE (0.75) */
  memoryShare: z.number().gt(0).max(1).default(PLACEMENT_MEMORY_SHARE),
  /** start a model even where it does not fit (the host may swap). @default false */
  loadAnyway: z.boolean().default(false),
  /** unload an own model idle this long, ms; 0 = never. @default IDLE_UNLOAD_MS (0, off) */
  idleUnloadMs: z.number().int().nonnegative().default(IDLE_UNLOAD_MS),
  /** sustained queue beyond the slots before a replica starts, ms. @default SCALE_UP_AFTER_MS (10000 ms) */
  scaleUpAfterMs: z.number().int().nonnegative().default(SCALE_UP_AFTER_MS),
  /** idle time after which a replica stops, ms. @default SCALE_DOWN_AFTER_MS (300000 ms) */
  scaleDownAfterMs: z.number().int().nonnegative().default(SCALE_DOWN_AFTER_MS),
  /** longest drain of a serving runner chosen for eviction, ms. @default EVICT_DRAIN_MS (30000 ms) */
  evictDrainMs: z.number().int().nonnegative().default(EVICT_DRAIN_MS),
  /** models kept loaded and never evicted. @default [] */
  pins: z.array(PinConfigSchema).max(256).default([])
}).prefault({})
export type PlacementConfig = z.infer<typeof PlacementConfigSchema>
