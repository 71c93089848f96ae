import type { Heartbeat, PeerMetrics } from '@llmesh/protocol'
import { HEARTBEAT_INTERVAL_MS } from './constants.js'

/**
 * Member states. ONLY APPEND TO THIS LIST.
 * - alive: heard within `suspectAfterMs`
 * - suspect: silent for `suspectAfterMs`; still listed and still routable if connected
 * - dead: silent for `deadAfterMs`; not routed to, shown in the view until pruned
 * - left: said goodbye (graceful shutdown); not routed to
 */
export const MemberStates = ['alive', 'suspect', 'dead', 'left'] as const
export type MemberState = typeof MemberStates[number]

export interface MembershipTimings {
  /**
   * Silence after which a peer is suspect. With heartbeats every 500 ms, 1500 ms means three
   * heartbeats in a row were missed: short enough to stop routing to a vanished host within
   * about 2 s, long enough that one late or dropped heartbeat changes nothing.
   * @default 1500 ms
   */
  suspectAfterMs: number
  /**
   * Silence after which a peer is dead. Must exceed the longest link flap that should NOT evict
   * a host: 4000 ms rides out flaps of a couple of seconds (a cable re-plugged, Wi-Fi roaming),
   * at the price of routing to a gone host's queue for up to 4 s (requests to it fail over).
   * @default 4000 ms
   */
  deadAfterMs: number
  /**
   * A dead or left peer is forgotten (and its entry pruned from the cluster document) after
   * this. Long, so a host rebooting for an update keeps its place in `llmesh status`.
   * @default 600000 ms (10 min)
   */
  pruneAfterMs: number
}

/** LAN profile. A WAN profile would multiply every figure by about 5. */
export const LAN_TIMINGS: MembershipTimings = Object.freeze({
  suspectAfterMs: 1500,
  deadAfterMs: 4000,
  pruneAfterMs: 600_000
})

export interface Member {
  peerId: string
  /** the peer's announced heartbeat period over the base period (>= 1): silence thresholds scale by it */
  scale: number
  state: MemberState
  /** local clock time of the last heartbeat accepted */
  lastHeardAt: number
  incarnation: number
  seq: number
  metrics: PeerMetrics
}

/**
 * Membership from heartbeats, memberlist-style: one record per peer ordered by
 * (incarnation, seq); stale news is dropped by a guard clause; states follow from silence
 * measured on the injected clock. Pure: no timers, no I/O.
 */
export class Membership {
  private readonly members = new Map<string, Omit<Member, 'state'> & { left: boolean }>()
  private readonly timings: MembershipTimings
  private readonly now: () => number
  private readonly baseIntervalMs: number

  /** `baseIntervalMs`: the heartbeat period the timings are written for. */
  constructor (timings: MembershipTimings, now: () => number, baseIntervalMs = HEARTBEAT_INTERVAL_MS) {
    if (!(timings.suspectAfterMs > 0 && timings.deadAfterMs > timings.suspectAfterMs && timings.pruneAfterMs > timings.deadAfterMs)) {
      throw new Error('membership timings must satisfy 0 < suspectAfterMs < deadAfterMs < pruneAfterMs')
    }
    this.timings = timings
    this.now = now
    this.baseIntervalMs = baseIntervalMs
  }

  /** Accepts a heartbeat; returns false (and changes nothing) when it is older than what we have. */
  heard (peerId: string, hb: Heartbeat): boolean {
    const known = this.members.get(peerId)
    if (known != null) {
      if (hb.incarnation < known.incarnation) return false
      if (hb.incarnation === known.incarnation && hb.seq <= known.seq) return false
    }
    this.members.set(peerId, {
      peerId,
      scale: Math.max(1, (hb.intervalMs ?? this.baseIntervalMs) / this.baseIntervalMs),
      lastHeardAt: this.now(),
      incarnation: hb.incarnation,
      seq: hb.seq,
      metrics: hb.metrics,
      left: hb.status === 'left'
    })
    return true
  }

  /**
   * Replaces a member's figures without touching its order or liveness: its last heartbeat held
   * again to bounds that changed since it arrived (the peer's record). False when unknown.
   */
  remetric (peerId: string, metrics: PeerMetrics): boolean {
    const known = this.members.get(peerId)
    if (known == null) return false
    known.metrics = metrics
    return true
  }

  get (peerId: string): Member | undefined {
    const m = this.members.get(peerId)
    if (m == null) return undefined
    const { left, ...rest } = m
    return { ...rest, state: this.stateOf(m) }
  }

  /** Every member not yet forgotten. */
  list (): Member[] {
    return [...this.members.keys()].map((id) => this.get(id)).filter((m): m is Member => m != null)
  }

  /** Peers that may be routed to: alive or suspect (a suspect host may just be slow). */
  isUsable (peerId: string): boolean {
    const m = this.members.get(peerId)
    if (m == null) return false
    const state = this.stateOf(m)
    return state === 'alive' || state === 'suspect'
  }

  /** Forgets peers gone for longer than pruneAfterMs; returns their ids (to prune their entries). */
  prune (): string[] {
    const gone: string[] = []
    const now = this.now()
    for (const [id, m] of this.members) {
      if (now - m.lastHeardAt >= this.timings.pruneAfterMs) {
        this.members.delete(id)
        gone.push(id)
      }
    }
    return gone
  }

  private stateOf (m: { lastHeardAt: number, left: boolean, scale: number }): MemberState {
    if (m.left) return 'left'
    const silence = this.now() - m.lastHeardAt
    if (silence < this.timings.suspectAfterMs * m.scale) return 'alive'
    if (silence < this.timings.deadAfterMs * m.scale) return 'suspect'
    return 'dead'
  }
}
