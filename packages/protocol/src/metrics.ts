import { z } from 'zod'

/**
 * Fast-changing numbers of one peer, sent on the metrics topic a few times a second. They
 * never enter the cluster document (which would grow without bound); last writer wins per
 * peer, ordered by (incarnation, seq), and they expire on their own.
 */
export const PeerMetricsSchema = z.object({
  // --- the host's AdmissionSnapshot ---
  /** requests being served by this host's runners now */
  slotsBusy: z.number().int().nonnegative().default(0),
  /** parallel slots of this host's ready runners */
  slotsTotal: z.number().int().nonnegative().default(0),
  /** requests waiting for a slot on this host */
  queueDepth: z.number().int().nonnegative().default(0),
  /** generated tokens per second, EWMA over recent requests */
  tokensPerSec: z.number().nonnegative().default(0),
  /** time to first token, ms, EWMA */
  latencyMs: z.number().nonnegative().default(0),
  /** share of recent requests that succeeded, 0..1 */
  successRate: z.number().min(0).max(1).default(1),
  /** this peer's in-flight requests as a router, per target peer id ("routing claims") */
  claims: z.record(z.string().max(128), z.number().int().nonnegative()).default({}),
  // --- optional, appended: older peers send neither ---
  /** how far single requests' time to first token lies from latencyMs, ms (EW standard deviation) */
  latencyDev: z.number().nonnegative().optional(),
  /** same for tokensPerSec */
  tokensPerSecDev: z.number().nonnegative().optional(),
  /** admission per model served here (demand-driven replicas read it), at most MAX_METRICS_MODELS */
  models: z.array(z.object({
    model: z.string().min(1).max(256),
    slots: z.number().int().nonnegative(),
    busy: z.number().int().nonnegative(),
    queue: z.number().int().nonnegative()
  })).max(64).optional(),
  /**
   * The conversations (prefix keys, see the scheduler's prefixKey) this host served last, most
   * recent first, at most MAX_CACHE_KEYS: [key, ms since it last served one of its turns,
   * tokens of the conversation its runner held after that turn (0: unknown)]. Where their KV
   * cache is: routers send a conversation's next turn there.
   */
  cache: z.array(z.tuple([z.string().min(1).max(32), z.number().int().nonnegative().max(2 ** 31), z.number().int().nonnegative().max(2 ** 31)])).max(64).optional(),
  /** prompt tokens its runners evaluate per second, EWMA over requests with long prompts */
  prefillTokensPerSec: z.number().nonnegative().optional()
})
export type PeerMetrics = z.infer<typeof PeerMetricsSchema>

export const HeartbeatSchema = z.object({
  v: z.literal(1),
  /** the sender's start time, ms: a restarted agent's heartbeats win over its old ones */
  incarnation: z.number().nonnegative(),
  /** increases by one per heartbeat within an incarnation */
  seq: z.number().int().nonnegative(),
  /** 'left' is sent once on graceful shutdown */
  status: z.enum(['alive', 'left']),
  /** the sender's current heartbeat period, ms: receivers scale their silence thresholds by it */
  intervalMs: z.number().int().positive().max(60_000).optional(),
  metrics: PeerMetricsSchema
})
export type Heartbeat = z.infer<typeof HeartbeatSchema>

/** Most conversations a heartbeat says this host holds the cache of. */
export const MAX_CACHE_KEYS = 64

/** Most models a heartbeat reports admission for. */
export const MAX_METRICS_MODELS = 64

/** Largest heartbeat accepted, bytes. */
export const MAX_HEARTBEAT_BYTES = 64 * 1024
