import type { LoadEstimate, TargetMetrics } from './cluster-view.js'
import {
  BATCH_SLOWDOWN, COLD_START_MS, DEFAULT_LATENCY_MS, DEFAULT_TOKENS_PER_SEC, EXPECTED_OUTPUT_TOKENS, MAX_PRIORITY,
  MAX_CACHED_TOKENS, MIN_SUCCESS_RATE, PREFILL_TO_DECODE_SPEED, PRIORITY_QUEUE_JUMP, REMOTE_HOP_MS, STALE_PENALTY_MS, VRAM_HEADROOM_BYTES, VRAM_PRESSURE_MS
} from './constants.js'
import { clampPriority } from './strategy.js'

/**
 * Tuning of the performance score; every field defaults to the constant of the same name in
 * constants.ts, where its unit and trade-off are explained.
 */
export interface PerformanceInit {
  /** @default 256 tokens */
  expectedTokens?: number
  /** @default 250 ms */
  defaultLatencyMs?: number
  /** @default 20 tokens/s */
  defaultTokensPerSec?: number
  /** @default 0.5 */
  batchSlowdown?: number
  /** @default 0.9 */
  priorityQueueJump?: number
  /** @default 0.05 */
  minSuccessRate?: number
  /** @default 2 ms */
  remoteHopMs?: number
  /** @default 15000 ms */
  coldStartMs?: number
  /** @default 1 GiB */
  vramHeadroomBytes?: number
  /** @default 2000 ms */
  vramPressureMs?: number
  /** @default 500 ms */
  stalePenaltyMs?: number
}

/** Speed assumed for hosts that have reported none: the median of those that have. */
export interface Priors {
  latencyMs: number
  tokensPerSec: number
}

export interface PerformanceCandidate {
  local: boolean
  cold: boolean
  load: LoadEstimate
  metrics: TargetMetrics | undefined
  /** the host's metrics are fresh */
  fresh: boolean
}

export interface PerformanceContext {
  priority: number
  expectedTokens?: number
  priors: Priors
  /** some candidate has fresh metrics: a silent remote one is then penalised (never the own host) */
  anyFresh: boolean
}

export interface Speed {
  ttftMs: number
  tokensPerSec: number
  /** ms for one request alone on the host: first token + decoding expectedTokens */
  serviceMs: number
  /** both figures were measured (not priors) */
  measured: boolean
  /**
   * How much one request's service time varies on this host, as a fraction of serviceMs:
   * from the deviations of its measured figures (0 when none are known)
   */
  relDev: number
}

function positive (value: number | undefined): number | undefined {
  return value != null && Number.isFinite(value) && value > 0 ? value : undefined
}

function median (values: number[]): number | undefined {
  if (values.length === 0) return undefined
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** Priors for hosts without measurements: the median of the candidates that have some. */
export function priorsOf (metrics: Iterable<TargetMetrics | undefined>, init: PerformanceInit = {}): Priors {
  const lat: number[] = []
  const tps: number[] = []
  for (const m of metrics) {
    const l = positive(m?.latencyMsEwma)
    const t = positive(m?.tokensPerSecEwma)
    if (l != null) lat.push(l)
    if (t != null) tps.push(t)
  }
  return {
    latencyMs: median(lat) ?? init.defaultLatencyMs ?? DEFAULT_LATENCY_MS,
    tokensPerSec: median(tps) ?? init.defaultTokensPerSec ?? DEFAULT_TOKENS_PER_SEC
  }
}

/** How fast a host serves one request alone. Used by `performance` and `fastest`. */
export function speedOf (metrics: TargetMetrics | undefined, priors: Priors, expectedTokens?: number, init: PerformanceInit = {}): Speed {
  const l = positive(metrics?.latencyMsEwma)
  const t = positive(metrics?.tokensPerSecEwma)
  const ttftMs = l ?? priors.latencyMs
  const tokensPerSec = t ?? priors.tokensPerSec
  const tokens = positive(expectedTokens) ?? init.expectedTokens ?? EXPECTED_OUTPUT_TOKENS
  const serviceMs = ttftMs + (tokens / tokensPerSec) * 1000
  // first order: d(service) = d(ttft) - tokens x 1000 / tps^2 x d(tps), the two independent
  const devTtft = l != null ? positive(metrics?.latencyMsDev) ?? 0 : 0
  const devDecode = t != null ? (tokens * 1000 / (t * t)) * (positive(metrics?.tokensPerSecDev) ?? 0) : 0
  return { ttftMs, tokensPerSec, serviceMs, measured: l != null && t != null, relDev: Math.hypot(devTtft, devDecode) / serviceMs }
}

/**
 * What a cache hit saves on a host, ms: the prefill of the tokens it holds (at most
 * MAX_CACHED_TOKENS), at the host's measured prefill rate, else PREFILL_TO_DECODE_SPEED times
 * its decode rate (measured, else the prior), and never slower than its decode rate: a host
 * cannot make its conversations stick whatever its queue by reporting a slow prefill or a huge
 * cache. Subtracted from that host's cost, so a conversation stays where its cache is until
 * waiting there costs more than evaluating its history again elsewhere.
 */
export function cacheSavingMs (cachedTokens: number | undefined, metrics: TargetMetrics | undefined, priors: Priors, prefillToDecode = PREFILL_TO_DECODE_SPEED): number {
  const tokens = positive(cachedTokens)
  if (tokens == null) return 0
  const decode = positive(metrics?.tokensPerSecEwma) ?? priors.tokensPerSec
  const prefill = Math.max(decode, positive(metrics?.prefillTokensPerSecEwma) ?? decode * prefillToDecode)
  return Math.min(tokens, MAX_CACHED_TOKENS) * 1000 / prefill
}

export interface PerformanceScore {
  /** expected ms until the response is complete, with penalties; lower is better */
  cost: number
  /** Speed.relDev of the host */
  relDev: number
  reasons: string[]
}

/**
 * The `performance` strategy's score: the expected time, in ms, until this request's response
 * is complete on a host, plus penalties for risk. Lower is better.
 *
 *     service  = ttft + expectedTokens / tokensPerSec x 1000     one request alone on the host
 *     slowdown = 1 + BATCH_SLOWDOWN x min(1, occupied / slots)   busy slots share the GPU
 *     ahead    = queued x (1 - PRIORITY_QUEUE_JUMP x priority/10)  queued requests it waits for
 *     wait     = 0 if a slot is free, else (ahead + 1) x service / slots
 *     cost     = (wait + service x slowdown) / max(successRate, MIN_SUCCESS_RATE)
 *              + REMOTE_HOP_MS           if the host is not this one
 *              + COLD_START_MS           if its runner is still loading
 *              + VRAM_PRESSURE_MS x max(0, 1 - vramFree / VRAM_HEADROOM_BYTES)
 *              + STALE_PENALTY_MS        if a remote host's metrics are stale while others' are fresh
 *
 * Trade-offs:
 * - One unit (ms) for everything, so a penalty reads as "worth this much waiting". A cold
 *   start (15 s) loses to almost any queue; VRAM pressure (<= 2 s) loses to an idle host but
 *   not to a long queue; the remote hop (2 ms) only decides near-ties, so the local host
 *   wins when hosts are equal.
 * - wait: with every slot busy, a slot frees on average every service/slots ms (slots run in
 *   parallel); a request waits for the ones queued ahead of it plus one. The EWMAs already
 *   reflect recent load, so busy hosts are counted a little twice; the effect is a mild extra
 *   preference for idle hosts, which is what spreading needs.
 * - Dividing by the success rate gives the expected time including retries elsewhere
 *   (geometric tries); a flaky host costs proportionally more but never becomes infinite.
 * - Priority moves only the wait term: a high-priority request jumps most of a target's queue
 *   (the target orders by effective priority), so it may still go to a fast, busy host; a
 *   low-priority one prefers an idle slow host to the back of a fast host's queue.
 * - Unmeasured hosts get the median of the measured ones: assumed average, so new hosts
 *   receive traffic and gain a record.
 */
export function performanceScore (c: PerformanceCandidate, ctx: PerformanceContext, init: PerformanceInit = {}): PerformanceScore {
  const speed = speedOf(c.metrics, ctx.priors, ctx.expectedTokens, init)
  const { load } = c
  const slowdown = 1 + (init.batchSlowdown ?? BATCH_SLOWDOWN) * Math.min(1, load.occupied / load.slots)
  const jump = (init.priorityQueueJump ?? PRIORITY_QUEUE_JUMP) * clampPriority(ctx.priority) / MAX_PRIORITY
  const ahead = load.queued * (1 - jump)
  const wait = load.freeSlots > 0 ? 0 : (ahead + 1) * speed.serviceMs / load.slots
  const rawSuccess = c.metrics?.successRate
  const success = rawSuccess != null && Number.isFinite(rawSuccess) ? Math.min(1, rawSuccess) : 1
  const minSuccess = init.minSuccessRate ?? MIN_SUCCESS_RATE
  let cost = (wait + speed.serviceMs * slowdown) / Math.max(success, minSuccess)
  const reasons = [
    `ttft=${Math.round(speed.ttftMs)}ms`,
    `tps=${round1(speed.tokensPerSec)}`
  ]
  if (!speed.measured) reasons.push('speed=prior')
  if (wait > 0) reasons.push(`wait=${Math.round(wait)}ms`)
  if (success < 1) reasons.push(`success=${success.toFixed(2)}`)
  if (!c.local) cost += init.remoteHopMs ?? REMOTE_HOP_MS
  if (c.cold) cost += init.coldStartMs ?? COLD_START_MS
  const vram = c.fresh ? c.metrics?.vramFreeBytes : undefined
  if (vram != null && Number.isFinite(vram)) {
    const headroom = init.vramHeadroomBytes ?? VRAM_HEADROOM_BYTES
    const pressure = Math.max(0, 1 - Math.max(0, vram) / headroom)
    if (pressure > 0) {
      cost += pressure * (init.vramPressureMs ?? VRAM_PRESSURE_MS)
      reasons.push(`vram-low=${Math.round(Math.max(0, vram) / 2 ** 20)}MiB`)
    }
  }
  if (!c.fresh && ctx.anyFresh && !c.local) {
    cost += init.stalePenaltyMs ?? STALE_PENALTY_MS
    reasons.push('metrics=stale')
  }
  return { cost, relDev: speed.relDev, reasons: [`cost=${Math.round(cost)}ms`, ...reasons] }
}

function round1 (n: number): number {
  return Math.round(n * 10) / 10
}
