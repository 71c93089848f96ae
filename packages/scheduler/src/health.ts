import type { CircuitState, TargetMetrics } from './cluster-view.js'
import { CircuitBreakers, type CircuitBreakerInit } from './circuit-breaker.js'
import { MIN_OWN_SAMPLES } from './constants.js'
import { PeerStats, mergeObserved, type PeerStatsInit } from './ewma.js'
import { isHostFailure, type Outcome } from './outcome.js'

export interface PeerHealthInit {
  breaker?: CircuitBreakerInit
  stats?: PeerStatsInit
  /** own outcomes needed before they replace a host's reported speed. @default 3 */
  minOwnSamples?: number
}

/**
 * A router's memory of how its forwards went, per host: circuit breakers and outcome EWMAs
 * behind one `report()`. Injected clock. The agent keeps one per process:
 *
 *     if (!health.allow(peerId, now())) skip this target      // open, or half-open with a probe out
 *     ... forward ...
 *     health.report(peerId, outcome, now())                   // every attempt, success or not
 *     rank({ ..., circuits: health.circuits(now()), view: { nodes, metrics: health.metrics(gossiped, now()) } })
 */
export class PeerHealth {
  readonly stats: PeerStats
  readonly breakers: CircuitBreakers
  private readonly minOwnSamples: number

  constructor (init: PeerHealthInit = {}) {
    this.stats = new PeerStats(init.stats)
    this.breakers = new CircuitBreakers(init.breaker)
    this.minOwnSamples = init.minOwnSamples ?? MIN_OWN_SAMPLES
  }

  allow (peerId: string, now: number): boolean {
    return this.breakers.allow(peerId, now)
  }

  report (peerId: string, outcome: Outcome, now: number): void {
    this.stats.record(peerId, outcome, now)
    const b = this.breakers.get(peerId)
    if (outcome.ok) b.onSuccess(now)
    else if (isHostFailure(outcome.failure)) b.onFailure(now)
    else b.onNeutral(now)
  }

  circuits (now: number): Map<string, CircuitState> {
    return this.breakers.states(now)
  }

  /** The gossiped metrics with this router's own observations laid over (see mergeObserved). */
  metrics (gossiped: ReadonlyMap<string, TargetMetrics>, now: number): Map<string, TargetMetrics> {
    return mergeObserved(gossiped, this.stats, now, this.minOwnSamples)
  }
}
