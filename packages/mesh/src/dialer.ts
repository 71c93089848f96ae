import type { Clock, Logger } from '@llmesh/protocol'
import type { ClusterDoc } from '@llmesh/state'
import { backoffDelay } from '@llmesh/kit'
import {
  BOOTSTRAP_REDIAL_MS, DIAL_TIEBREAK_MS, FIRST_DIAL_TIMEOUT_MS, RECONNECT_DIAL_TIMEOUT_MS, RECONNECT_INTERVAL_MS, RECONNECT_MAX_BACKOFF_MS, RECONNECT_TICK_MS
} from './constants.js'
import { Timers } from '@llmesh/kit'
import type { Membership } from './membership.js'
import { guarded, type MeshStats } from './stats.js'
import type { DialTarget, Transport } from './transport.js'

export interface DialerInit {
  doc: ClusterDoc
  membership: Membership
  stats: MeshStats
  /** multiaddrs dialled at start and again every BOOTSTRAP_REDIAL_MS while unconnected */
  bootstrap?: string[]
  /** a probe replaced a peer's connection: its old streams are gone */
  onReconnected?: (peer: string) => void
}

/**
 * The delay before redial or probe number `failures` of one peer (counted from the start of the
 * failed attempt): the one backoff (`@llmesh/kit`), min(RECONNECT_MAX_BACKOFF_MS,
 * RECONNECT_INTERVAL_MS x 2^(failures-1)), without jitter: redials are per peer pair, there is
 * no crowd to spread.
 */
export function redialDelay (failures: number): number {
  return backoffDelay(failures, { baseMs: RECONNECT_INTERVAL_MS, maxMs: RECONNECT_MAX_BACKOFF_MS, jitter: 'none' })
}

interface Redial { at: number, failures: number, pending: boolean }

/**
 * Keeps the cluster fully connected: dials the bootstrap addresses, every peer found (mDNS,
 * discovery) and every peer of the cluster document we hold no connection to, with one backoff
 * per peer (redialDelay); and probes peers found dead behind a connection that may be a corpse.
 */
export class Dialer {
  private readonly timers: Timers
  /** peers being dialled or probed now, and when to try each again */
  private readonly redialAt = new Map<string, Redial>()
  private stopped = false

  constructor (private readonly transport: Transport, private readonly clock: Clock, private readonly log: Logger, private readonly init: DialerInit) {
    this.timers = new Timers(clock)
  }

  start (): void {
    // libp2p does not redial a known peer after a partition: every discovery answer is a chance to
    this.transport.on('peer:discovery', (peer, addrs) => {
      void this.dialPeer(peer, addrs.length > 0 ? { addrs } : undefined)
    })
    this.dialBootstrap()
    this.timers.every(RECONNECT_TICK_MS, () => { guarded(this.init.stats, this.log, 'timer', () => { this.reconnectKnown() }) })
  }

  /** When the next redial or probe of `peer` is due (undefined: none held back). For tests and status. */
  nextAttemptAt (peer: string): number | undefined {
    return this.redialAt.get(peer)?.at
  }

  /**
   * A peer silent long enough to be dead may sit behind a corpse connection (link cut: TCP
   * notices only after minutes) or behind a live one that is merely slow (a loaded host). Hanging
   * up on it would turn slowness into reconnection churn, so instead: dial it afresh beside the
   * old connection (short timeout, once per redialDelay). If that succeeds, the link is back: the
   * old connection is closed and heartbeats resume on the new one.
   */
  probe (peer: string): void {
    const now = this.clock.now()
    const entry = this.redialAt.get(peer) ?? { at: 0, failures: 0, pending: false }
    if (this.stopped || entry.pending || now < entry.at) return
    const addrs = this.init.doc.get(peer)?.addrs ?? []
    try {
      this.transport.check(peer, addrs)
    } catch (err) {
      this.init.stats.handlerErrors++
      this.log.warn({ peer, err: (err as Error).message }, 'peer not probed: bad id or address')
      return
    }
    if (addrs.length === 0) return
    const old = this.transport.connectionsTo(peer)
    if (old.length === 0) return // the redial pass handles unconnected peers
    entry.pending = true
    entry.at = now + redialDelay(entry.failures + 1)
    this.redialAt.set(peer, entry)
    const { signal, release } = this.timers.timeout(RECONNECT_DIAL_TIMEOUT_MS)
    this.transport.dial({ addrs }, { force: true, signal }).then((conn) => {
      entry.pending = false
      entry.failures = 0
      this.init.onReconnected?.(peer)
      for (const c of old) if (c.id !== conn.id) void this.transport.hangUp(c.id).catch(() => {})
    }, () => {
      entry.pending = false
      entry.failures++
    }).finally(release)
  }

  /**
   * Dials every peer of the cluster document we hold no connection to (by the addresses in its
   * record), each at most once per redialDelay. This is what brings a healed link back within
   * about a second, with or without multicast, and joins peers that only share a bootstrap host.
   */
  private reconnectKnown (): void {
    const now = this.clock.now()
    const self = this.transport.peerId
    for (const record of this.init.doc.records()) {
      const peer = record.peerId
      if (peer === self || record.addrs.length === 0 || this.init.membership.get(peer)?.state === 'left') continue
      try {
        this.transport.check(peer, record.addrs)
      } catch {
        continue
      }
      if (this.transport.connectionsTo(peer).length > 0) {
        this.redialAt.delete(peer)
        continue
      }
      const entry = this.redialAt.get(peer) ?? { at: 0, failures: 0, pending: false }
      if (entry.pending || now < entry.at) continue
      const attemptAt = now
      entry.pending = true
      this.redialAt.set(peer, entry)
      // a peer we were connected to gets short attempts (a heal is noticed within a second); a
      // peer we never reached gets the patient first-dial timeout (handshakes may queue at start)
      const timeout = this.init.membership.get(peer) != null ? RECONNECT_DIAL_TIMEOUT_MS : FIRST_DIAL_TIMEOUT_MS
      void this.dialPeer(peer, { addrs: record.addrs }, timeout).then((ok) => {
        entry.pending = false
        if (ok) {
          this.redialAt.delete(peer)
          return
        }
        entry.failures++
        // counted from the attempt's start: a dial that timed out is retried at once
        entry.at = attemptAt + redialDelay(entry.failures)
      })
    }
  }

  /**
   * Dials a peer unless connected. When two peers find each other at once, both would dial and
   * hold two connections (double heartbeats, double pings); so the peer with the smaller id
   * dials at once and the other only if still unconnected after DIAL_TIEBREAK_MS.
   */
  async dialPeer (peer: string, target?: DialTarget, timeoutMs = FIRST_DIAL_TIMEOUT_MS): Promise<boolean> {
    if (this.stopped || peer === this.transport.peerId) return false
    try {
      this.transport.check(peer, [])
    } catch {
      return false
    }
    if (this.transport.connectionsTo(peer).length > 0) return true
    if (this.transport.peerId > peer) {
      await this.timers.sleep(DIAL_TIEBREAK_MS)
      if (this.stopped) return false
      if (this.transport.connectionsTo(peer).length > 0) return true
    }
    const { signal, release } = this.timers.timeout(timeoutMs)
    try {
      await this.transport.dial(target ?? { peer }, { signal })
      return true
    } catch (err) {
      this.log.debug({ peer, err: (err as Error).message }, 'dial failed')
      return false
    } finally {
      release()
    }
  }

  /** Dials every bootstrap address now and again every BOOTSTRAP_REDIAL_MS while unconnected. */
  private dialBootstrap (): void {
    const addrs = this.init.bootstrap ?? []
    if (addrs.length === 0) return
    const dialAll = (): void => {
      for (const addr of addrs) {
        let peer
        try {
          peer = this.transport.peerOfAddr(addr)
        } catch (err) {
          this.log.error({ addr, err }, 'bad bootstrap address, skipped')
          continue
        }
        if (peer != null && this.transport.connectionsTo(peer).length > 0) continue
        this.transport.dial({ addrs: [addr] }).catch((err: unknown) => {
          this.log.debug({ addr, err: err instanceof Error ? err.message : String(err) }, 'bootstrap dial failed')
        })
      }
    }
    guarded(this.init.stats, this.log, 'bootstrap', dialAll)
    this.timers.every(BOOTSTRAP_REDIAL_MS, () => { guarded(this.init.stats, this.log, 'bootstrap', dialAll) })
  }

  stop (): void {
    this.stopped = true
    this.timers.clear()
  }
}
