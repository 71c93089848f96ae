import type { AdmissionSnapshot } from '@llmesh/protocol'
import { Claims, overlayReport, targetMetrics } from '../claims.js'
import type { RankResult, RoundRobinState, RouteRequest, TargetMetrics } from '../cluster-view.js'
import { BUSY_REPORT_TTL_MS, CACHE_AFFINITY_MEMORY } from '../constants.js'
import { PeerHealth } from '../health.js'
import { rank } from '../rank.js'
import { RetryBudget } from '../retry-budget.js'
import { DEFAULT_STRATEGY, type Strategy } from '../strategy.js'
import type { DispatchView } from './types.js'

export interface DispatcherInit {
  /** floats in [0, 1): rank()'s shuffle and the backoff's jitter */
  random: () => number
  /** strategy when a request names none. @default 'performance' */
  defaultStrategy?: Strategy
  /** @default BUSY_REPORT_TTL_MS (1000 ms) */
  busyReportTtlMs?: number
}

/**
 * A router's memory across requests, which each request's `Dispatch` reads and updates: its
 * claims (gossiped), the health of the hosts it sent to (circuits, observed speed), the retry
 * budget, the round-robin cursor and what hosts' busy answers said. No clock, no I/O: times come
 * in with the views.
 */
export class Dispatcher {
  readonly claims = new Claims()
  readonly health = new PeerHealth()
  readonly budget = new RetryBudget()
  readonly random: () => number
  private readonly defaultStrategy: Strategy
  private readonly busyReportTtlMs: number
  private roundRobin: RoundRobinState = new Map()
  /** what hosts' "busy" answers said of them, until their next heartbeat (see BUSY_REPORT_TTL_MS) */
  private readonly busyReports = new Map<string, { report: AdmissionSnapshot, at: number }>()
  /** where this router last sent each conversation, least recently sent first (CACHE_AFFINITY_MEMORY at most) */
  private readonly affinity = new Map<string, { peerId: string, at: number }>()

  constructor (init: DispatcherInit) {
    this.random = init.random
    this.defaultStrategy = init.defaultStrategy ?? DEFAULT_STRATEGY
    this.busyReportTtlMs = init.busyReportTtlMs ?? BUSY_REPORT_TTL_MS
  }

  /**
   * Ranks the hosts for `request` on one view, with everything this router knows besides: the
   * one place the dispatch asks which host (where a user-supplied policy, view in and ranking
   * out, would plug in).
   */
  rank (request: RouteRequest, view: DispatchView): RankResult {
    const { now } = view
    const r = rank({
      view: {
        nodes: view.nodes,
        metrics: this.withBusyReports(this.health.metrics(targetMetrics(view.peers, view.selfPeerId), now), now),
        ...(view.placements != null ? { placements: view.placements } : {}),
        ...(view.pins != null ? { pins: view.pins } : {})
      },
      request,
      selfPeerId: view.selfPeerId,
      reachable: view.reachable,
      inflight: this.claims.inflight,
      random: this.random,
      now,
      roundRobin: this.roundRobin,
      circuits: this.health.circuits(now),
      defaultStrategy: this.defaultStrategy,
      affinity: this.affinity
    })
    this.roundRobin = r.roundRobin
    return r
  }

  /** Remembers that conversation `key` went to `peerId` at `at`: its next turn finds its cache there. */
  rememberCache (key: string, peerId: string, at: number): void {
    this.affinity.delete(key)
    this.affinity.set(key, { peerId, at })
    if (this.affinity.size > CACHE_AFFINITY_MEMORY) this.affinity.delete(this.affinity.keys().next().value!)
  }

  /** Remembers the admission figures a host's busy answer carried (see withBusyReports). */
  rememberBusy (peerId: string, report: AdmissionSnapshot, at: number): void {
    this.busyReports.set(peerId, { report, at })
  }

  /**
   * Lays what busy answers said over the metrics: such a host counts as full (with the queue it
   * reported) until a heartbeat newer than the answer arrives, or BUSY_REPORT_TTL_MS passed.
   * Without it, a router sends every request until that heartbeat to the host its last request
   * found full, and collects a busy answer for each.
   */
  private withBusyReports (metrics: Map<string, TargetMetrics>, now: number): Map<string, TargetMetrics> {
    let out = metrics
    for (const [peerId, { report, at }] of this.busyReports) {
      if ((metrics.get(peerId)?.heartbeatAt ?? -Infinity) > at || now - at > this.busyReportTtlMs) {
        this.busyReports.delete(peerId)
        continue
      }
      out = overlayReport(out, peerId, report, at)
    }
    return out
  }
}
