import type { AdmissionSnapshot, EffectivePin, NodeRecord, PlacementsEntry } from '@llmesh/protocol'
import type { Strategy } from './strategy.js'

/**
 * Contracts of the router: what it is given (a snapshot, never live state) and what it
 * answers. Implementations live in rank.ts and the files it calls.
 */

/**
 * What this router knows about one target host's load and speed, from the host's heartbeats
 * (metrics topic) and the other routers' claims. Every field may be missing: missing means
 * unknown, never zero load. Negative or non-finite numbers are treated as missing. The
 * admission figures are the host's own report.
 */
export interface TargetMetrics extends Partial<AdmissionSnapshot> {
  /** per-request decode speed, tokens/s, EWMA; 0 = no samples yet */
  tokensPerSecEwma?: number
  /** time to first token, ms, EWMA; 0 = no samples yet */
  latencyMsEwma?: number
  /** how far single requests' time to first token lies from latencyMsEwma, ms (standard deviation) */
  latencyMsDev?: number
  /** same for tokens/s */
  tokensPerSecDev?: number
  /** share of recent requests that succeeded, 0..1 */
  successRate?: number
  /** free accelerator memory, bytes (sum over the host's GPUs) */
  vramFreeBytes?: number
  /**
   * In-flight requests OTHER routers claim on this host, summed over them (not this router's
   * own: those come fresh from RankInput.inflight). Build with `targetMetrics()`.
   */
  claims?: number
  /** local clock time (same clock as RankInput.now) this router last heard the host, ms */
  heartbeatAt?: number
  /**
   * the conversations (prefix keys) whose turns this host served lately, each with the time
   * (RankInput.now's clock) it last did and the tokens its runner then held (0: unknown): where
   * their KV cache is
   */
  cache?: ReadonlyMap<string, { at: number, tokens: number }>
  /** prompt tokens evaluated per second, EWMA; 0 or absent = no samples */
  prefillTokensPerSecEwma?: number
}

/** The converged view the router decides on. */
export interface ClusterView {
  /** every node record of the cluster document, own included */
  nodes: readonly NodeRecord[]
  /** per peer id; a peer missing here is routed on its node record and this router's claims */
  metrics: ReadonlyMap<string, TargetMetrics>
  /**
   * the cluster document's placements section, per owner host: starts planned or loading
   * there are waited for instead of starting another. @default none
   */
  placements?: ReadonlyMap<string, PlacementsEntry>
  /** the pins in effect (`effectivePins()`): a cold start never evicts them. @default none */
  pins?: readonly EffectivePin[]
}

export interface RouteRequest {
  model: string
  /** 0-10, higher first. @default 5 */
  priority?: number
  /** conversation key for prefix-affinity (see `prefixKey()`) */
  prefixKey?: string
  /** peer ids already tried for this request (failover): never ranked */
  exclude?: Iterable<string>
  /** @default RankInput.defaultStrategy, else 'performance' */
  strategy?: Strategy
  /**
   * Also rank hosts whose runner for the model is registered but not ready (starting, loading,
   * stopped) when some reachable host has it ready, after every loaded host. Without a ready
   * host anywhere, hosts loading the model are ranked whatever this says (see rank()).
   * @default false
   */
  allowCold?: boolean
  /** start the model where it does not fit in memory, if it has to be started (x-llmesh-load-anyway). @default false */
  loadAnyway?: boolean
  /** context a cold start is planned for, tokens. @default DEFAULT_CTX_SIZE (4096) */
  ctxSize?: number
  /** output tokens expected (the request's max_tokens, if given). @default 256 */
  expectedTokens?: number
  /** prompt tokens, estimated: what a host holding the conversation's cache does not evaluate again */
  promptTokens?: number
}

/** Per-host circuit state, as the router's breakers see it now (see CircuitBreakers.states). */
export type CircuitState = 'closed' | 'open' | 'half-open'

/**
 * Round-robin cursors, per model: the peer id chosen last. Passed in, and the new state comes
 * back in the result, so `rank()` stays a pure function. Keep one per router.
 */
export type RoundRobinState = ReadonlyMap<string, string>

export interface RankInput {
  view: ClusterView
  request: RouteRequest
  selfPeerId: string
  /** peers this router can reach now (connected, not dead); the own peer needs no entry */
  reachable: ReadonlySet<string>
  /** requests THIS router has in flight per target peer id (its own claims) */
  inflight: ReadonlyMap<string, number>
  /** injected randomness in [0, 1): tie breaks and the `random` strategy */
  random: () => number
  /** injected clock, ms, the clock of TargetMetrics.heartbeatAt */
  now: number
  /** @default empty: the first host in peer-id order comes first */
  roundRobin?: RoundRobinState
  /** circuits that are not closed; a missing peer is closed */
  circuits?: ReadonlyMap<string, CircuitState>
  /** strategy when the request names none. @default 'performance' */
  defaultStrategy?: Strategy
  /** where this router last sent each conversation (prefix key), and when (RankInput.now's clock) */
  affinity?: ReadonlyMap<string, { peerId: string, at: number }>
}

/** How full a host is, and from what (see load.ts). */
export interface LoadEstimate {
  /** requests occupying or waiting for the host's slots, deduplicated */
  occupied: number
  slots: number
  /** occupied / slots */
  load: number
  /** slots - occupied, never below 0 */
  freeSlots: number
  /** requests beyond the slots: the queue this request would wait behind */
  queued: number
  /** the host's report was used (fresh) */
  reported: boolean
}

export interface RankedTarget {
  peerId: string
  /**
   * the runner to ask for; the target may use another of the same model. Empty when the
   * target has no runner of it yet: a planned start, or the cold start `coldStart` describes
   */
  runnerId: string
  local: boolean
  /** the runner is still starting or loading */
  cold: boolean
  /** strategy-specific sort key, lower is better (performance: expected ms to completion) */
  score: number
  load: LoadEstimate
  /** why, for the x-llmesh-route header and the debug log; prompts never appear */
  reasons: string[]
  /**
   * the host holds the conversation's cache and is worth waiting for (see rank's cache
   * affinity): the request may queue there, though other hosts may have a free slot
   */
  waitForCache?: true
  /** no host runs the model: this target was planned to start it (see planCold) */
  coldStart?: {
    /** what the model takes there, bytes */
    footprintBytes: number
    /** what the target has to evict first, bytes (0: it fits) */
    evictBytes: number
    /** the model fits no single host: the target coordinates a split over these hosts (planSplit), itself first */
    split?: Array<{ peerId: string, layers: number }>
  }
}

/** A host that was not ranked, and why: for the debug log. */
export interface SkippedTarget {
  peerId: string
  reason: 'unreachable' | 'excluded' | 'circuit-open' | 'not-ready'
}

export type RankResult =
  | {
    ok: true
    strategy: Strategy
    /** best first; failover takes the next one. Never empty. */
    targets: RankedTarget[]
    /**
     * No target has a free slot (as far as this router knows): dispatch with queueing allowed
     * at once, instead of collecting "busy" answers first.
     */
    allFull: boolean
    skipped: SkippedTarget[]
    /** store it and pass it to the next call */
    roundRobin: RoundRobinState
  }
  | {
    ok: false
    code: 'MODEL_NOT_FOUND' | 'NO_CAPACITY' | 'INSUFFICIENT_MEMORY'
    message: string
    /** INSUFFICIENT_MEMORY: what the model needs, bytes */
    needBytes?: number
    /** INSUFFICIENT_MEMORY: the most room a host with the file could make, bytes */
    largestFreeBytes?: number
    /** models the reachable mesh serves, sorted */
    available: string[]
    skipped: SkippedTarget[]
    roundRobin: RoundRobinState
  }
