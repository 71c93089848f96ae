import type { TargetMetrics } from './cluster-view.js'
import { MIN_OWN_SAMPLES, STATS_EWMA_ALPHA, SUCCESS_EWMA_ALPHA, SUCCESS_RECOVERY_HALF_LIFE_MS } from './constants.js'
import { isHostFailure, type Outcome } from './outcome.js'

/**
 * Exponentially weighted moving average per sample, and the same weighting's variance of the
 * samples around it (Finch, "Incremental calculation of weighted mean and variance", 2009):
 *
 *     diff = sample - value;  value += alpha x diff;  variance = (1 - alpha) x (variance + alpha x diff^2)
 */
export class Ewma {
  private v: number | undefined
  private var = 0
  private n = 0
  readonly alpha: number

  /** @param alpha weight of the newest sample, 0..1 */
  constructor (alpha: number) {
    this.alpha = Math.min(1, Math.max(0, alpha))
  }

  /** undefined until the first sample */
  get value (): number | undefined { return this.v }
  get samples (): number { return this.n }
  /** how far single samples lie from the average (weighted standard deviation); undefined before the second sample */
  get deviation (): number | undefined { return this.n >= 2 ? Math.sqrt(this.var) : undefined }

  update (sample: number): number {
    if (!Number.isFinite(sample)) return this.v ?? 0
    if (this.v == null) {
      this.v = sample
    } else {
      const diff = sample - this.v
      this.v += this.alpha * diff
      this.var = (1 - this.alpha) * (this.var + this.alpha * diff * diff)
    }
    this.n++
    return this.v
  }
}

export interface PeerStatsInit {
  /** @default 0.2 */
  alpha?: number
  /** @default 0.1 */
  successAlpha?: number
  /** @default 30000 ms */
  successRecoveryHalfLifeMs?: number
}

export interface ObservedStats {
  latencyMsEwma?: number
  tokensPerSecEwma?: number
  /** spread of single requests' figures around the EWMAs (see Ewma.deviation) */
  latencyMsDev?: number
  tokensPerSecDev?: number
  /** 0..1, recovered towards 1 by the time since the last outcome */
  successRate: number
  /** outcomes recorded (successes and host failures) */
  samples: number
}

interface PeerEntry {
  latency: Ewma
  tps: Ewma
  /** success EWMA as of lastAt; undefined before the first outcome */
  success: number | undefined
  outcomes: number
  lastAt: number
}

/**
 * Latency, tokens/s and success-rate EWMAs per host, from outcomes (injected clock). Two uses:
 * - a host records the requests IT serves (runner-side figures) and gossips them as its
 *   `tokensPerSec` / `latencyMs` / `successRate` metrics;
 * - a router records the requests it forwards (figures that include the network and the
 *   target's queue) and lays them over the gossiped ones with `mergeObserved()`.
 * Only host failures lower the success rate; busy, aborted and the like leave it alone. With
 * no traffic, the success rate recovers towards 1 with SUCCESS_RECOVERY_HALF_LIFE_MS:
 *
 *     success(now) = 1 - (1 - success(lastAt)) x 0.5 ^ ((now - lastAt) / halfLife)
 */
export class PeerStats {
  private readonly peers = new Map<string, PeerEntry>()
  private readonly alpha: number
  private readonly successAlpha: number
  private readonly halfLifeMs: number

  constructor (init: PeerStatsInit = {}) {
    this.alpha = init.alpha ?? STATS_EWMA_ALPHA
    this.successAlpha = Math.min(1, Math.max(0, init.successAlpha ?? SUCCESS_EWMA_ALPHA))
    this.halfLifeMs = init.successRecoveryHalfLifeMs ?? SUCCESS_RECOVERY_HALF_LIFE_MS
  }

  record (peerId: string, outcome: Outcome, now: number): void {
    if (!outcome.ok && !isHostFailure(outcome.failure)) return
    let e = this.peers.get(peerId)
    if (e == null) {
      e = { latency: new Ewma(this.alpha), tps: new Ewma(this.alpha), success: undefined, outcomes: 0, lastAt: now }
      this.peers.set(peerId, e)
    }
    const sample = outcome.ok ? 1 : 0
    const current = this.successAt(e, now)
    e.success = current == null ? sample : current + this.successAlpha * (sample - current)
    e.outcomes++
    e.lastAt = now
    if (outcome.ok) {
      if (outcome.firstTokenMs != null && outcome.firstTokenMs >= 0) e.latency.update(outcome.firstTokenMs)
      if (outcome.tokensPerSec != null && outcome.tokensPerSec > 0) e.tps.update(outcome.tokensPerSec)
    }
  }

  get (peerId: string, now: number): ObservedStats | undefined {
    const e = this.peers.get(peerId)
    if (e == null) return undefined
    const out: ObservedStats = { successRate: this.successAt(e, now) ?? 1, samples: e.outcomes }
    if (e.latency.value != null) out.latencyMsEwma = e.latency.value
    if (e.tps.value != null) out.tokensPerSecEwma = e.tps.value
    if (e.latency.deviation != null) out.latencyMsDev = e.latency.deviation
    if (e.tps.deviation != null) out.tokensPerSecDev = e.tps.deviation
    return out
  }

  peerIds (): string[] {
    return [...this.peers.keys()]
  }

  private successAt (e: PeerEntry, now: number): number | undefined {
    if (e.success == null) return undefined
    const dt = Math.max(0, now - e.lastAt)
    const keep = this.halfLifeMs > 0 ? 0.5 ** (dt / this.halfLifeMs) : 1
    return 1 - (1 - e.success) * keep
  }
}

/**
 * Lays a router's own observations over what hosts report about themselves: for a host this
 * router has at least `minSamples` outcomes of, its latency, tokens/s and success rate replace
 * the reported ones (they include the network between the two and what the host's own figures
 * miss, like connect failures). Returns a new map; the inputs are not changed.
 */
export function mergeObserved (metrics: ReadonlyMap<string, TargetMetrics>, stats: PeerStats, now: number, minSamples: number = MIN_OWN_SAMPLES): Map<string, TargetMetrics> {
  const out = new Map(metrics)
  for (const peerId of stats.peerIds()) {
    const s = stats.get(peerId, now)
    if (s == null || s.samples < minSamples) continue
    const m: TargetMetrics = { ...metrics.get(peerId), successRate: s.successRate }
    if (s.latencyMsEwma != null) m.latencyMsEwma = s.latencyMsEwma
    if (s.tokensPerSecEwma != null) m.tokensPerSecEwma = s.tokensPerSecEwma
    // the deviations go with the averages they belong to: own ones, or none
    if (s.latencyMsDev != null) m.latencyMsDev = s.latencyMsDev
    else delete m.latencyMsDev
    if (s.tokensPerSecDev != null) m.tokensPerSecDev = s.tokensPerSecDev
    else delete m.tokensPerSecDev
    out.set(peerId, m)
  }
  return out
}
