import { HeartbeatSchema, MAX_HEARTBEAT_BYTES, METRICS_PROTOCOL, type Clock, type Heartbeat, type Logger, type PeerMetrics } from '@llmesh/protocol'
import type { ClusterDoc } from '@llmesh/state'
import { HEARTBEAT_INTERVAL_MS, MAX_HEARTBEATS_IN_PER_SEC, MAX_HEARTBEATS_PER_SEC, MEMBER_WATCH_MS, NUDGE_MS, SYNC_TIMEOUT_MS, URGENT_NUDGE_GAP_MS, URGENT_NUDGE_MS } from './constants.js'
import { Timers } from '@llmesh/kit'
import { HeartbeatRate, clampHeartbeat } from './heartbeat-bounds.js'
import { LAN_TIMINGS, Membership, type MembershipTimings } from './membership.js'
import { guarded, type MeshStats } from './stats.js'
import type { Channel, Transport } from './transport.js'

export interface HeartbeatsInit {
  doc: ClusterDoc
  stats: MeshStats
  /** this agent's start time: orders its heartbeats after a restart */
  incarnation: number
  /** the numbers to put in each heartbeat */
  metrics: () => PeerMetrics
  /** heartbeat period. @default HEARTBEAT_INTERVAL_MS */
  intervalMs?: number
  /** @default LAN_TIMINGS */
  timings?: MembershipTimings
  /** a peer we hear of but hold no record for (its record is missing here: sync) */
  onUnknownPeer?: (peer: string) => void
  /** a member found dead at a watch pass (MEMBER_WATCH_MS) */
  onDead?: (peer: string) => void
}

/**
 * Heartbeats on direct streams (`/llmesh/metrics/1`, one outbound stream per peer) and the
 * Membership they feed: each is rate-limited, parsed, held to the bounds the sender's record
 * allows, and ordered by (incarnation, seq). Silence moves members alive -> suspect -> dead on
 * the clock; a watch pass logs those changes and reports the dead (see onDead).
 */
export class Heartbeats {
  readonly membership: Membership
  private readonly timers: Timers
  private readonly rate = new HeartbeatRate(MAX_HEARTBEATS_IN_PER_SEC)
  /** outbound heartbeat stream per peer (opening or open) */
  private readonly out = new Map<string, { ready: Promise<Channel> }>()
  private readonly lastStates = new Map<string, string>()
  /**
   * Each peer's last heartbeat as it was sent: a heartbeat often arrives before the record change
   * that allows its figures (a runner just ready: the record's delta is on its way by gossip),
   * and the clamp would hold the host at 0 slots until its next heartbeat. So the figures are
   * clamped again whenever a remote change reached the document (reclamp).
   */
  private readonly lastHeartbeats = new Map<string, Heartbeat>()
  private seq = 0
  private nudgeTimer?: ReturnType<Clock['setTimeout']>
  /** when the pending nudge fires; Infinity when none is pending */
  private nudgeDue = Infinity
  /** when the last urgent nudge fired or fires */
  private lastUrgentAt = -Infinity
  private stopped = false

  constructor (private readonly transport: Transport, private readonly clock: Clock, private readonly log: Logger, private readonly init: HeartbeatsInit) {
    this.timers = new Timers(clock)
    this.membership = new Membership(init.timings ?? LAN_TIMINGS, clock.now, init.intervalMs ?? HEARTBEAT_INTERVAL_MS)
  }

  async start (): Promise<void> {
    await this.transport.handle(METRICS_PROTOCOL, (channel, peer) => {
      void this.read(channel, peer)
    }, { maxDataLength: MAX_HEARTBEAT_BYTES })
    // every new connection gets a heartbeat at once
    this.transport.on('peer:ready', (peer) => { void this.sendTo(peer, this.encode('alive')) })
    this.timers.every(MEMBER_WATCH_MS, () => { guarded(this.init.stats, this.log, 'timer', () => { this.watch() }) })
    this.timers.every(() => this.intervalMs(), () => { void this.send('alive') })
    void this.send('alive')
  }

  /**
   * The heartbeat period: the configured base, stretched once this agent would send more than
   * MAX_HEARTBEATS_PER_SEC (one heartbeat per peer per period, in a fully connected mesh the
   * cost grows with N²). Each heartbeat announces the period, so receivers stretch their
   * silence thresholds alike: 20 hosts detect a cut in about 3 s instead of 1.5 s, and stay
   * within a small machine's means.
   */
  intervalMs (): number {
    const base = this.init.intervalMs ?? HEARTBEAT_INTERVAL_MS
    return Math.max(base, Math.round(this.transport.connectedPeers().length * 1000 / MAX_HEARTBEATS_PER_SEC))
  }

  /**
   * Sends a heartbeat soon rather than at the next tick, because what it carries changed in a
   * way other agents should see (this router's claims on a host): NUDGE_MS after the first
   * change, carrying every change made meanwhile. `urgent` (a conversation new to this host:
   * its next turn may come through another entry within milliseconds) sends it URGENT_NUDGE_MS
   * after the change, but at most one urgent heartbeat per URGENT_NUDGE_GAP_MS.
   */
  nudge (urgent = false): void {
    if (this.stopped) return
    const now = this.clock.now()
    const due = urgent ? Math.max(now + URGENT_NUDGE_MS, this.lastUrgentAt + URGENT_NUDGE_GAP_MS) : now + NUDGE_MS
    if (this.nudgeTimer != null && this.nudgeDue <= due) return
    this.timers.cancel(this.nudgeTimer)
    this.nudgeDue = due
    if (urgent) this.lastUrgentAt = due
    this.nudgeTimer = this.timers.after(due - now, () => {
      this.nudgeTimer = undefined
      this.nudgeDue = Infinity
      void this.send('alive')
    })
  }

  /** One heartbeat to every connected peer, each on its own metrics stream. */
  async send (status: Heartbeat['status']): Promise<void> {
    if (this.stopped && status !== 'left') return
    const data = this.encode(status)
    await Promise.all(this.transport.connectedPeers().map(async (peer) => { await this.sendTo(peer, data) }))
  }

  /** Drops the outbound stream to `peer` (its connection was replaced): the next heartbeat opens one. */
  forget (peer: string): void {
    this.out.delete(peer)
  }

  /** Re-clamps the held heartbeats after a remote change to the document. */
  reclamp (): void {
    for (const [peer, hb] of this.lastHeartbeats) {
      if (!this.membership.remetric(peer, clampHeartbeat(hb, peer, this.init.doc).heartbeat.metrics)) this.lastHeartbeats.delete(peer)
    }
  }

  private encode (status: Heartbeat['status']): Uint8Array {
    const hb: Heartbeat = {
      v: 1, incarnation: this.init.incarnation, seq: ++this.seq, status, intervalMs: this.intervalMs(), metrics: this.init.metrics()
    }
    return new TextEncoder().encode(JSON.stringify(hb, omitDefaults))
  }

  /** Writes a heartbeat on the outbound metrics stream to `peer`, opening it when needed. */
  private async sendTo (peer: string, data: Uint8Array): Promise<void> {
    let out = this.out.get(peer)
    const { signal, release } = this.timers.timeout(SYNC_TIMEOUT_MS)
    try {
      if (out == null) {
        out = { ready: this.transport.open(peer, METRICS_PROTOCOL, { signal, maxDataLength: MAX_HEARTBEAT_BYTES }) }
        this.out.set(peer, out)
      }
      const ch = await out.ready
      await ch.write(data, { signal })
      this.init.stats.heartbeatsSent++
      this.init.stats.bytesPublished += data.length
    } catch (err) {
      // the stream broke (peer gone, link cut): the next tick opens a new one if still connected
      if (this.out.get(peer) === out) this.out.delete(peer)
      void out?.ready.then((ch) => { ch.abort(new Error('heartbeat write failed')) }, () => {})
      this.log.debug({ peer, err: (err as Error).message }, 'heartbeat not sent')
    } finally {
      release()
    }
  }

  /** Reads a peer's heartbeats from its metrics stream until the stream ends. */
  private async read (ch: Channel, peer: string): Promise<void> {
    try {
      while (!this.stopped) {
        const frame = await ch.read()
        this.init.stats.bytesReceived += frame.byteLength
        this.onHeartbeat(peer, frame)
      }
    } catch {
      // stream ended or sent an oversize frame: the peer opens a new one
    } finally {
      ch.abort(new Error('metrics stream closed'))
    }
  }

  private onHeartbeat (sender: string, data: Uint8Array): void {
    const { stats, doc } = this.init
    if (!this.rate.allow(sender, this.clock.now())) {
      stats.heartbeatsRateLimited++
      return
    }
    let hb: Heartbeat | undefined
    if (data.length <= MAX_HEARTBEAT_BYTES) {
      try {
        const parsed = HeartbeatSchema.safeParse(JSON.parse(new TextDecoder().decode(data)))
        if (parsed.success) hb = parsed.data
      } catch {}
    }
    if (hb == null) {
      stats.heartbeatsDropped++
      return
    }
    stats.heartbeatsReceived++
    // what a peer says of itself is held to what its record in the cluster document allows
    const bounded = clampHeartbeat(hb, sender, doc)
    for (const reason of bounded.reasons) stats.heartbeatClamps[reason]++
    if (!this.membership.heard(sender, bounded.heartbeat)) return
    this.lastHeartbeats.set(sender, hb)
    hb = bounded.heartbeat
    const after = this.membership.get(sender)?.state ?? 'unknown'
    const before = this.lastStates.get(sender)
    if (before !== after) {
      this.lastStates.set(sender, after)
      this.log.info({ peer: sender, from: before ?? 'unknown', to: after }, 'member state')
    }
    if (hb.status === 'alive' && doc.get(sender) == null) this.init.onUnknownPeer?.(sender)
  }

  /** Logs state changes that silence caused (heartbeats only report the ones they cause) and reports the dead. */
  private watch (): void {
    for (const m of this.membership.list()) {
      const before = this.lastStates.get(m.peerId)
      if (before !== m.state) {
        this.lastStates.set(m.peerId, m.state)
        if (before != null) this.log.info({ peer: m.peerId, from: before, to: m.state }, 'member state')
      }
      if (m.state === 'dead') this.init.onDead?.(m.peerId)
    }
  }

  stop (): void {
    this.stopped = true
    this.timers.clear()
  }
}

/**
 * JSON replacer for heartbeats: metrics equal to their schema default (zero counters, full
 * success rate, no claims) are left out; the receiver's schema puts them back. An idle
 * heartbeat shrinks by about half, and it is sent to every peer twice a second.
 */
function omitDefaults (key: string, value: unknown): unknown {
  if (key === 'successRate') return value === 1 ? undefined : value
  if (key === 'claims') return value != null && Object.keys(value).length > 0 ? value : undefined
  if (value === 0 && ['slotsBusy', 'slotsTotal', 'queueDepth', 'tokensPerSec', 'latencyMs'].includes(key)) return undefined
  return value
}
