import type { AdmissionSnapshot } from '@llmesh/protocol'
import type { TargetMetrics } from './cluster-view.js'
import { nonNegative } from './load.js'

/**
 * This router's own in-flight requests per target host ("routing claims"): what it passes to
 * `rank()` as `inflight` and gossips in its heartbeats as `claims`. Counts never go negative:
 * `claim()` returns a release that works once, however often it is called (a stream's
 * `finally` and an error path may both run).
 */
export class Claims {
  private readonly counts = new Map<string, number>()

  /** Counts one request on `peerId`; call the returned function when it ends, in any way. */
  claim (peerId: string): () => void {
    this.counts.set(peerId, (this.counts.get(peerId) ?? 0) + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      const next = (this.counts.get(peerId) ?? 0) - 1
      if (next > 0) this.counts.set(peerId, next)
      else this.counts.delete(peerId)
    }
  }

  get (peerId: string): number {
    return this.counts.get(peerId) ?? 0
  }

  /** live view for `rank()`'s `inflight` */
  get inflight (): ReadonlyMap<string, number> {
    return this.counts
  }

  /** plain copy for the heartbeat's `claims` field */
  toRecord (): Record<string, number> {
    return Object.fromEntries(this.counts)
  }
}

/**
 * One peer as membership knows it: the metrics it last reported (the heartbeat's shape,
 * `@llmesh/protocol` PeerMetrics) and when this router heard it. Structural, so the mesh's
 * Member fits as it is.
 */
export interface ReportingPeer {
  peerId: string
  /** membership state; a 'dead' or 'left' peer's claims and metrics are ignored */
  state?: string
  /** local clock time of its last heartbeat, ms */
  lastHeardAt?: number
  metrics: Partial<AdmissionSnapshot> & {
    /** 0 = no samples */
    tokensPerSec?: number
    /** 0 = no samples */
    latencyMs?: number
    latencyDev?: number
    tokensPerSecDev?: number
    successRate?: number
    vramFreeBytes?: number
    /** its in-flight requests as a router, per target peer id */
    claims?: Readonly<Record<string, number>>
    /** admission per model it serves (PeerMetrics.models): demand-driven replicas read it */
    models?: ReadonlyArray<{ model: string, slots: number, busy: number, queue: number }>
    /** conversations it served last: key, ms since, tokens held (PeerMetrics.cache) */
    cache?: ReadonlyArray<readonly [string, number, number]>
    /** prompt tokens evaluated per second */
    prefillTokensPerSec?: number
  }
}

/**
 * Builds `rank()`'s metrics map from what membership holds: each host's own report, and per
 * host the claims of every OTHER router summed (this router's own claims are left out; they
 * come fresh from `Claims.inflight`). Include the own host with lastHeardAt = now, so that its
 * busy slots and queue count too. Dead and departed peers count for nothing: their requests
 * died with them.
 */
export function targetMetrics (peers: Iterable<ReportingPeer>, selfPeerId: string): Map<string, TargetMetrics> {
  const out = new Map<string, TargetMetrics>()
  const entry = (peerId: string): TargetMetrics => {
    let e = out.get(peerId)
    if (e == null) {
      e = { claims: 0 }
      out.set(peerId, e)
    }
    return e
  }
  for (const p of peers) {
    if (p.state === 'dead' || p.state === 'left') continue
    const m = p.metrics
    const e = entry(p.peerId)
    if (m.slotsBusy != null) e.slotsBusy = nonNegative(m.slotsBusy)
    if (m.slotsTotal != null) e.slotsTotal = nonNegative(m.slotsTotal)
    if (m.queueDepth != null) e.queueDepth = nonNegative(m.queueDepth)
    if (m.tokensPerSec != null && m.tokensPerSec > 0) e.tokensPerSecEwma = m.tokensPerSec
    if (m.latencyMs != null && m.latencyMs > 0) e.latencyMsEwma = m.latencyMs
    if (m.latencyDev != null && e.latencyMsEwma != null) e.latencyMsDev = nonNegative(m.latencyDev)
    if (m.tokensPerSecDev != null && e.tokensPerSecEwma != null) e.tokensPerSecDev = nonNegative(m.tokensPerSecDev)
    if (m.successRate != null && Number.isFinite(m.successRate)) e.successRate = Math.min(1, Math.max(0, m.successRate))
    if (m.vramFreeBytes != null) e.vramFreeBytes = nonNegative(m.vramFreeBytes)
    if (p.lastHeardAt != null) e.heartbeatAt = p.lastHeardAt
    if (m.cache != null && m.cache.length > 0 && p.lastHeardAt != null) {
      const heard = p.lastHeardAt
      e.cache = new Map(m.cache.map(([key, ageMs, tokens]) => [key, { at: heard - nonNegative(ageMs), tokens: nonNegative(tokens) }]))
    }
    if (m.prefillTokensPerSec != null && m.prefillTokensPerSec > 0) e.prefillTokensPerSecEwma = m.prefillTokensPerSec
    if (p.peerId === selfPeerId || m.claims == null) continue
    for (const [target, n] of Object.entries(m.claims)) {
      const t = entry(target)
      t.claims = (t.claims ?? 0) + nonNegative(n)
    }
  }
  return out
}

/**
 * Lays a fresher report of one host over the metrics map, e.g. the admission snapshot a target
 * sends with its "busy" answer: the router then knows that host is full until the next
 * heartbeat, instead of finding out again with every request. Returns a new map.
 */
export function overlayReport (metrics: ReadonlyMap<string, TargetMetrics>, peerId: string, report: AdmissionSnapshot, now: number): Map<string, TargetMetrics> {
  const out = new Map(metrics)
  out.set(peerId, {
    ...metrics.get(peerId),
    slotsBusy: nonNegative(report.slotsBusy),
    slotsTotal: nonNegative(report.slotsTotal),
    queueDepth: nonNegative(report.queueDepth),
    heartbeatAt: now
  })
  return out
}
