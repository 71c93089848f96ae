import type { LoadEstimate, TargetMetrics } from './cluster-view.js'
import { METRICS_STALE_MS } from './constants.js'

/** A count from the outside world: negative, NaN or infinite counts as 0. */
export function nonNegative (value: number | undefined): number {
  return value != null && Number.isFinite(value) && value > 0 ? value : 0
}

/** metrics fresh enough to trust their load figures */
export function isFresh (metrics: TargetMetrics | undefined, now: number, staleMs: number = METRICS_STALE_MS): boolean {
  const at = metrics?.heartbeatAt
  if (at == null || !Number.isFinite(at)) return false
  return now - at <= staleMs
}

export interface LoadInput {
  /** this router's own in-flight requests on the host (fresh: it counts them itself) */
  own: number
  metrics: TargetMetrics | undefined
  /** slots from the host's node record (its ready runners), used when no fresh report has them */
  recordSlots: number
  now: number
  /** @default METRICS_STALE_MS */
  staleMs?: number
}

/**
 * How full a host is: occupied / slots, where
 *
 *     occupied = max(own + others' claims, reported busy + reported queued)
 *
 * Why a max and not a sum: every request a host serves reached it through some router, and that
 * router claims it until the response ends, so claims (own + others') and the host's report
 * count the SAME requests from two sides. Summing would count each one twice (a host with 2 of
 * 2 slots busy would look 200% full, and the "free slot" test would fail at half load).
 * The two sides are wrong in different ways, and the max takes whichever knows more:
 * - claims see a request the moment it is dispatched, before the host has started it or
 *   reported it: during a burst, this is what spreads three routers over three hosts;
 * - the report sees traffic no router claims (clients calling llama-server directly, or claims
 *   gossip that is late or lost) and requests still running after a router forgot them.
 * The price: when the host's report is the larger side, a router's new dispatches are hidden
 * in it until the next heartbeat (500 ms) or until claims overtake it. Own claims are exact
 * and fresh; others' claims are one heartbeat old at most.
 *
 * A stale report (older than staleMs) is ignored. Counts are never negative: bad input
 * counts as 0. Slots are the host's reported total when fresh and positive, else the node
 * record's, and at least 1.
 */
export function estimateLoad (input: LoadInput): LoadEstimate {
  const { metrics } = input
  const fresh = isFresh(metrics, input.now, input.staleMs)
  const reported = fresh && (metrics?.slotsBusy != null || metrics?.queueDepth != null)
  const claimed = nonNegative(input.own) + nonNegative(metrics?.claims)
  const hostSide = reported ? nonNegative(metrics?.slotsBusy) + nonNegative(metrics?.queueDepth) : 0
  const reportedSlots = fresh ? nonNegative(metrics?.slotsTotal) : 0
  const slots = Math.max(1, reportedSlots > 0 ? reportedSlots : nonNegative(input.recordSlots))
  const occupied = Math.max(claimed, hostSide)
  return {
    occupied,
    slots,
    load: occupied / slots,
    freeSlots: Math.max(0, slots - occupied),
    queued: Math.max(0, occupied - slots),
    reported
  }
}
