import type { Heartbeat, NodeRecord, PeerMetrics } from '@llmesh/protocol'
import {
  MAX_ANNOUNCED_INTERVAL_MS, MAX_HEARTBEAT_RATE_WINDOWS, MAX_REPORTED_QUEUE_PER_RUNNER, MAX_REPORTED_TOKENS_PER_SEC, MIN_ANNOUNCED_INTERVAL_MS, MIN_REPORTED_LATENCY_MS
} from './constants.js'

/**
 * Why a heartbeat figure was lowered (or raised) to its bound. ONLY APPEND TO THIS LIST: the
 * reasons are counters in `/mesh/stats`.
 */
export const ClampReasons = [
  'slots-over-record', 'busy-over-slots', 'queue-over-bound', 'tokens-per-sec-over-ceiling', 'latency-under-floor',
  'claim-over-capacity', 'claim-unknown-host', 'interval-out-of-bounds'
] as const
export type ClampReason = typeof ClampReasons[number]

/** What the receiver knows of the hosts from the cluster document. */
export interface RecordLookup {
  /** the record of a peer, undefined when the document holds none */
  get: (peerId: string) => NodeRecord | undefined
}

/** Parallel slots of a record's ready (or busy) runners: what its heartbeats may say at most. */
export function recordSlots (record: NodeRecord | undefined): number {
  let slots = 0
  for (const r of record?.runners ?? []) if (r.state === 'ready' || r.state === 'busy') slots += r.slots
  return slots
}

function readyRunners (record: NodeRecord | undefined): number {
  let n = 0
  for (const r of record?.runners ?? []) if (r.state === 'ready' || r.state === 'busy') n++
  return n
}

/**
 * A peer's heartbeat with its self-reported figures held to what the cluster document says of
 * it, and to sane bounds; returns the heartbeat to use and each reason a figure was changed.
 * Pure: no clock, no I/O. It lives in the mesh, where heartbeats are read, because it checks
 * input at the boundary against the cluster document the mesh carries; the scheduler keeps
 * trusting its input (and replaces reported speed by its own measurement once it has some).
 *
 * - slotsTotal <= the slots of the sender record's ready runners (a host cannot claim slots it
 *   has not published); slotsBusy <= slotsTotal; queueDepth <= MAX_REPORTED_QUEUE_PER_RUNNER per
 *   ready runner.
 * - tokensPerSec <= MAX_REPORTED_TOKENS_PER_SEC and a non-zero latencyMs >= MIN_REPORTED_LATENCY_MS:
 *   a host that says it is infinitely fast is held to the fastest a real one is, and routers
 *   replace the figure by their own measurement after a few requests (scheduler MIN_OWN_SAMPLES).
 * - a claim (a router's in-flight requests on a host) <= that host's slots +
 *   MAX_REPORTED_QUEUE_PER_RUNNER per ready runner, and claims on hosts without a record are
 *   dropped: one router cannot make a healthy host look full to every other.
 * - intervalMs within [MIN_ANNOUNCED_INTERVAL_MS, MAX_ANNOUNCED_INTERVAL_MS]: a host cannot
 *   stretch its silence thresholds to stay "alive" for minutes after it went quiet.
 *
 * What it cannot catch: a host that reports itself idle, or faster than it is within the
 * bounds; those lies cost it its own success rate as measured by the routers.
 */
export function clampHeartbeat (hb: Heartbeat, sender: string, records: RecordLookup): { heartbeat: Heartbeat, reasons: ClampReason[] } {
  const reasons: ClampReason[] = []
  const m = hb.metrics
  const own = records.get(sender)
  const slots = recordSlots(own)
  const metrics: PeerMetrics = { ...m }
  if (m.slotsTotal > slots) {
    metrics.slotsTotal = slots
    reasons.push('slots-over-record')
  }
  if (metrics.slotsBusy > metrics.slotsTotal) {
    metrics.slotsBusy = metrics.slotsTotal
    reasons.push('busy-over-slots')
  }
  const queueBound = readyRunners(own) * MAX_REPORTED_QUEUE_PER_RUNNER
  if (m.queueDepth > queueBound) {
    metrics.queueDepth = queueBound
    reasons.push('queue-over-bound')
  }
  if (m.tokensPerSec > MAX_REPORTED_TOKENS_PER_SEC) {
    metrics.tokensPerSec = MAX_REPORTED_TOKENS_PER_SEC
    reasons.push('tokens-per-sec-over-ceiling')
  }
  if (m.latencyMs > 0 && m.latencyMs < MIN_REPORTED_LATENCY_MS) {
    metrics.latencyMs = MIN_REPORTED_LATENCY_MS
    reasons.push('latency-under-floor')
  }
  const claims: Record<string, number> = {}
  for (const [target, n] of Object.entries(m.claims)) {
    const record = target === sender ? own : records.get(target)
    if (record == null) {
      reasons.push('claim-unknown-host')
      continue
    }
    const bound = recordSlots(record) + readyRunners(record) * MAX_REPORTED_QUEUE_PER_RUNNER
    if (n > bound) reasons.push('claim-over-capacity')
    claims[target] = Math.min(n, bound)
  }
  metrics.claims = claims
  const heartbeat: Heartbeat = { ...hb, metrics }
  if (hb.intervalMs != null && (hb.intervalMs < MIN_ANNOUNCED_INTERVAL_MS || hb.intervalMs > MAX_ANNOUNCED_INTERVAL_MS)) {
    heartbeat.intervalMs = Math.min(MAX_ANNOUNCED_INTERVAL_MS, Math.max(MIN_ANNOUNCED_INTERVAL_MS, hb.intervalMs))
    reasons.push('interval-out-of-bounds')
  }
  return { heartbeat, reasons: [...new Set(reasons)] }
}

/**
 * Per-peer heartbeat rate limit: at most `perSec` heartbeats of one peer are taken per second
 * (a fixed one-second window per peer); more are dropped. Pure, clock injected.
 */
export class HeartbeatRate {
  private readonly windows = new Map<string, { start: number, count: number }>()

  constructor (private readonly perSec: number) {}

  /** true when this heartbeat of `peer` may be read */
  allow (peer: string, now: number): boolean {
    const w = this.windows.get(peer)
    if (w == null && this.windows.size >= MAX_HEARTBEAT_RATE_WINDOWS) this.sweep(now)
    if (w == null || now - w.start >= 1000) {
      this.windows.set(peer, { start: now, count: 1 })
      return true
    }
    w.count++
    return w.count <= this.perSec
  }

  /** Windows that ended, dropped: many identities cannot grow the table. */
  private sweep (now: number): void {
    for (const [peer, w] of this.windows) if (now - w.start >= 1000) this.windows.delete(peer)
  }

  /** Peers with a window now (for tests). */
  get size (): number {
    return this.windows.size
  }
}
