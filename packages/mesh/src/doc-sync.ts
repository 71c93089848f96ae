import { SYNC_PROTOCOL, stateTopic, type Logger } from '@llmesh/protocol'
import type { Clock } from '@llmesh/protocol'
import type { ClusterDoc } from '@llmesh/state'
import { ANTI_ENTROPY_INTERVAL_MS, MAX_SYNC_MESSAGE_BYTES, SYNC_TIMEOUT_MS } from './constants.js'
import { Timers } from '@llmesh/kit'
import { guarded, type MeshStats } from './stats.js'
import type { Channel, Transport } from './transport.js'

export interface DocSyncInit {
  clusterId: string
  doc: ClusterDoc
  stats: MeshStats
  /** called after a remote update changed the document (heartbeat figures are re-clamped) */
  onRemoteApplied?: () => void
  /** picks the anti-entropy peer, in [0, 1). @default Math.random */
  random?: () => number
}

/**
 * The cluster document between peers: local changes go out as deltas on the cluster's gossip
 * topic; a new connection, a delta Yjs cannot place yet (a missed predecessor) and a periodic
 * anti-entropy pass run a state-vector sync over `/llmesh/sync/1` (SV -> diff, both ways), which
 * repairs whatever gossip lost.
 */
export class DocSync {
  private readonly timers: Timers
  private readonly log: Logger
  private readonly syncing = new Set<string>()
  private readonly random: () => number
  private unsubscribe?: () => void
  private stopped = false

  constructor (private readonly transport: Transport, clock: Clock, logger: Logger, private readonly init: DocSyncInit) {
    this.timers = new Timers(clock)
    this.log = logger
    this.random = init.random ?? Math.random
  }

  async start (): Promise<void> {
    const { transport, init } = this
    const topic = stateTopic(init.clusterId)
    transport.subscribe(topic, (from, data) => {
      guarded(init.stats, this.log, 'state delta', () => {
        if (from === transport.peerId) return
        init.stats.bytesReceived += data.length
        this.onDelta(from, data)
      })
    })
    this.unsubscribe = init.doc.onLocalUpdate((update) => {
      if (this.stopped) return
      init.stats.deltasPublished++
      init.stats.bytesPublished += update.length
      transport.publish(topic, update).catch((err: unknown) => {
        this.log.warn({ err }, 'state delta publish failed')
      })
    })
    await transport.handle(SYNC_PROTOCOL, (channel, peer) => {
      this.answer(channel, peer).catch((err: unknown) => {
        this.log.debug({ err, peer }, 'inbound sync failed')
        channel.abort(err instanceof Error ? err : new Error(String(err)))
      })
    }, { maxDataLength: MAX_SYNC_MESSAGE_BYTES })
    // every new connection starts with a state-vector sync, both ways
    transport.on('peer:ready', (peer) => { void this.sync(peer) })
    this.timers.every(ANTI_ENTROPY_INTERVAL_MS, () => {
      guarded(init.stats, this.log, 'timer', () => {
        // cheap insurance against any delta lost without a gap Yjs could notice
        const peers = transport.connectedPeers()
        const peer = peers[Math.floor(this.random() * peers.length)]
        if (peer != null) void this.sync(peer)
      })
    })
  }

  /**
   * State-vector sync with one peer: we send our state vector, the peer answers with what we
   * miss plus its own state vector, we send what it misses. At most one runs per peer.
   */
  async sync (peer: string): Promise<void> {
    if (this.stopped || this.syncing.has(peer)) return
    this.syncing.add(peer)
    const { signal, release } = this.timers.timeout(SYNC_TIMEOUT_MS)
    try {
      const ch = await this.transport.open(peer, SYNC_PROTOCOL, { signal, maxDataLength: MAX_SYNC_MESSAGE_BYTES })
      await ch.write(this.init.doc.stateVector(), { signal })
      const missing = await ch.read({ signal })
      const theirSv = await ch.read({ signal })
      this.init.stats.syncs++
      const result = this.applyRemote(missing)
      if (!result.applied) this.log.warn({ peer, reason: result.reason }, 'sync update dropped')
      await ch.write(this.init.doc.diff(theirSv), { signal })
      await ch.close({ signal })
    } catch (err) {
      if (!this.stopped) this.log.debug({ err, peer }, 'sync failed')
    } finally {
      release()
      this.syncing.delete(peer)
    }
  }

  private async answer (ch: Channel, peer: string): Promise<void> {
    const { signal, release } = this.timers.timeout(SYNC_TIMEOUT_MS)
    try {
      const theirSv = await ch.read({ signal })
      await ch.write(this.init.doc.diff(theirSv), { signal })
      await ch.write(this.init.doc.stateVector(), { signal })
      const missing = await ch.read({ signal })
      const result = this.applyRemote(missing)
      if (!result.applied) this.log.warn({ peer, reason: result.reason }, 'sync update dropped')
      await ch.close({ signal })
    } finally {
      release()
    }
  }

  private onDelta (sender: string, data: Uint8Array): void {
    this.init.stats.deltasReceived++
    const result = this.applyRemote(data, sender)
    if (!result.applied) {
      this.init.stats.deltasRejected++
      this.log.debug({ peer: sender, reason: result.reason }, 'state delta dropped')
    }
    // a delta we cannot place, or one Yjs parks for a missing predecessor: repair by sync
    if ((!result.applied && result.reason === 'unresolved') || this.init.doc.hasPending()) {
      void this.sync(sender)
    }
  }

  /** Applies a remote update to the cluster document; a change is reported (onRemoteApplied). */
  private applyRemote (update: Uint8Array, sender?: string): ReturnType<ClusterDoc['applyRemote']> {
    const result = this.init.doc.applyRemote(update, sender)
    if (result.applied) this.init.onRemoteApplied?.()
    return result
  }

  stop (): void {
    this.stopped = true
    this.timers.clear()
    this.unsubscribe?.()
    this.unsubscribe = undefined
  }
}
