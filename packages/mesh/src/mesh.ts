import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, type Identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { ping, type Ping } from '@libp2p/ping'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import type { Connection, PeerDiscovery, PeerId, PeerInfo, PrivateKey, Stream } from '@libp2p/interface'
import type { Logger } from 'pino'
import {
  SYNC_PROTOCOL, INFER_PROTOCOL, HeartbeatSchema, MAX_HEARTBEAT_BYTES, metricsTopic, stateTopic,
  type Heartbeat, type PeerMetrics
} from '@llmesh/protocol'
import type { ClusterDoc } from '@llmesh/state'
import {
  ANTI_ENTROPY_INTERVAL_MS, BOOTSTRAP_REDIAL_MS, HEARTBEAT_INTERVAL_MS, MAX_SYNC_MESSAGE_BYTES, MDNS_INTERVAL_MS,
  PING_INTERVAL_MS, PRUNE_CHECK_INTERVAL_MS, RECORD_REFRESH_FRACTION, SYNC_TIMEOUT_MS
} from './constants.js'
import { LAN_TIMINGS, Membership, type Member, type MembershipTimings } from './membership.js'

export interface MeshInit {
  /** peers of other clusters never mix: topics are scoped by this id */
  clusterId: string
  privateKey: PrivateKey
  /** multiaddrs to listen on, e.g. /ip4/127.0.0.1/tcp/0 */
  listen: string[]
  /** multiaddrs dialled at start and re-dialled while not connected */
  bootstrap?: string[]
  doc: ClusterDoc
  logger: Logger
  /**
   * Multicast DNS discovery on the LAN, scoped by cluster id. Never enable it where multicast
   * must not leave the machine (tests on loopback). @default { enabled: true, intervalMs: 1000 }
   */
  mdns?: { enabled: boolean, intervalMs?: number }
  /** heartbeat period on the metrics topic. @default HEARTBEAT_INTERVAL_MS */
  heartbeatIntervalMs?: number
  /** @default LAN_TIMINGS */
  timings?: MembershipTimings
  /** this agent's start time: orders its heartbeats after a restart */
  incarnation: number
  /** the numbers to put in each heartbeat */
  metrics: () => PeerMetrics
  /** called when our own record should be written again (periodic refresh against pruning) */
  refreshSelf?: () => void
  /** injected clock, for tests. @default Date.now */
  now?: () => number
}

/** Counters a test or `llmesh status` can read. */
export interface MeshStats {
  heartbeatsSent: number
  heartbeatsReceived: number
  heartbeatsDropped: number
  deltasPublished: number
  deltasReceived: number
  deltasRejected: number
  syncs: number
  bytesPublished: number
  bytesReceived: number
}

type Services = { identify: Identify, ping: Ping, pubsub: GossipSub }

/** Handler for one inbound stream of a protocol the agent serves (e.g. `/llmesh/infer/1`). */
export type StreamHandler = (stream: Stream, remotePeer: string) => Promise<void>

/**
 * The libp2p node of one agent: transports, encryption, gossip of the cluster document and
 * the direct streams between peers. It carries state; it decides nothing about routing.
 */
export class Mesh {
  private readonly init: MeshInit
  private readonly log: Logger
  private node?: Libp2p<Services>
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly syncing = new Set<string>()
  private unsubscribeDoc?: () => void
  private stopped = false
  private seq = 0
  private readonly now: () => number
  readonly membership: Membership
  readonly stats: MeshStats = {
    heartbeatsSent: 0, heartbeatsReceived: 0, heartbeatsDropped: 0, deltasPublished: 0, deltasReceived: 0,
    deltasRejected: 0, syncs: 0, bytesPublished: 0, bytesReceived: 0
  }

  constructor (init: MeshInit) {
    this.init = init
    this.log = init.logger.child({ component: 'mesh' })
    this.now = init.now ?? Date.now
    this.membership = new Membership(init.timings ?? LAN_TIMINGS, this.now)
    init.doc.mayPrune = (key) => this.prunable(key)
  }

  get peerId (): string {
    return this.libp2p.peerId.toString()
  }

  private get libp2p (): Libp2p<Services> {
    if (this.node == null) throw new Error('mesh is not started')
    return this.node
  }

  async start (): Promise<void> {
    const node = await createLibp2p({
      privateKey: this.init.privateKey,
      addresses: { listen: this.init.listen },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionMonitor: { pingInterval: PING_INTERVAL_MS },
      services: {
        // a service rather than a peerDiscovery entry, so its 'peer' events reach us for peers
        // libp2p already knows (the node-level 'peer:discovery' fires only for new ones)
        ...(this.init.mdns?.enabled === true
          ? { mdns: mdns({ serviceTag: `_llmesh-${this.init.clusterId}._udp.local`, interval: this.init.mdns.intervalMs ?? MDNS_INTERVAL_MS }) }
          : {}),
        identify: identify(),
        ping: ping(),
        pubsub: gossipsub({
          // small clusters: a publish must go out even before the mesh forms
          allowPublishToZeroTopicPeers: true,
          D: 4,
          Dlo: 2,
          Dhi: 8,
          Dout: 1,
          emitSelf: false
        })
      }
    })
    this.node = node
    const topic = stateTopic(this.init.clusterId)
    const mTopic = metricsTopic(this.init.clusterId)

    node.services.pubsub.subscribe(topic)
    node.services.pubsub.subscribe(mTopic)
    node.services.pubsub.addEventListener('message', (evt) => {
      const msg = evt.detail
      if (msg.type !== 'signed') return
      const sender = msg.from.toString()
      if (sender === this.peerId) return
      this.stats.bytesReceived += msg.data.length
      if (msg.topic === mTopic) this.onHeartbeat(sender, msg.data)
      else if (msg.topic === topic) this.onDelta(sender, msg.data)
    })
    this.unsubscribeDoc = this.init.doc.onLocalUpdate((update) => {
      if (this.stopped) return
      this.stats.deltasPublished++
      this.stats.bytesPublished += update.length
      node.services.pubsub.publish(topic, update).catch((err: unknown) => {
        this.log.warn({ err }, 'state delta publish failed')
      })
    })

    await node.handle(SYNC_PROTOCOL, (stream, connection) => {
      this.answerSync(stream, connection).catch((err: unknown) => {
        this.log.debug({ err, peer: connection.remotePeer.toString() }, 'inbound sync failed')
        stream.abort(err instanceof Error ? err : new Error(String(err)))
      })
    })

    node.addEventListener('peer:identify', (evt) => {
      // every new connection starts with a state-vector sync, both ways
      void this.sync(evt.detail.peerId.toString())
    })
    node.services.pubsub.addEventListener('subscription-change', (evt) => {
      // a peer just subscribed: tell it at once that we are alive instead of at the next tick
      if (evt.detail.subscriptions.some((s) => s.subscribe && s.topic === mTopic)) void this.sendHeartbeat('alive')
    })
    // libp2p does not redial a known peer after a partition: every discovery answer is a chance to
    const redial = (evt: CustomEvent<PeerInfo>): void => {
      const { id, multiaddrs } = evt.detail
      if (this.stopped || id.equals(node.peerId) || node.getConnections(id).length > 0) return
      node.dial(multiaddrs.length > 0 ? multiaddrs : id).catch((err: unknown) => {
        this.log.debug({ peer: id.toString(), err: (err as Error).message }, 'dial after discovery failed')
      })
    }
    node.addEventListener('peer:discovery', redial)
    const discovery = (node.services as Partial<Record<'mdns', PeerDiscovery>>).mdns
    discovery?.addEventListener('peer', redial)

    this.dialBootstrap()
    this.every(this.init.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS, () => { this.sendHeartbeat('alive') })
    this.every(ANTI_ENTROPY_INTERVAL_MS, () => {
      // cheap insurance against any delta lost without a gap Yjs could notice
      const peers = this.connectedPeers()
      const peer = peers[Math.floor(Math.random() * peers.length)]
      if (peer != null) void this.sync(peer)
    })
    const timings = this.init.timings ?? LAN_TIMINGS
    this.every(Math.min(PRUNE_CHECK_INTERVAL_MS, timings.pruneAfterMs / 4), () => { this.pruneDead() })
    this.every(timings.pruneAfterMs * RECORD_REFRESH_FRACTION, () => { this.init.refreshSelf?.() })
    this.sendHeartbeat('alive')
    this.log.info({ peerId: this.peerId, addrs: this.addrs() }, 'mesh started')
  }

  /** Multiaddrs (with /p2p/<id>) other agents can dial. */
  addrs (): string[] {
    return this.libp2p.getMultiaddrs().map((ma) => ma.toString())
  }

  connectedPeers (): string[] {
    return this.libp2p.getPeers().map((p) => p.toString())
  }

  /** Serves a protocol on inbound streams. Errors in the handler abort that stream only. */
  async handle (protocol: typeof INFER_PROTOCOL, handler: StreamHandler): Promise<void> {
    await this.libp2p.handle(protocol, (stream, connection) => {
      const remote = connection.remotePeer.toString()
      handler(stream, remote).catch((err: unknown) => {
        this.log.warn({ err, peer: remote, protocol }, 'stream handler failed')
        stream.abort(err instanceof Error ? err : new Error(String(err)))
      })
    })
  }

  /** Opens a stream of `protocol` to a peer, dialling it if needed. */
  async open (peerId: string, protocol: typeof INFER_PROTOCOL, signal?: AbortSignal): Promise<Stream> {
    return await this.libp2p.dialProtocol(peerIdFromString(peerId), protocol, signal != null ? { signal } : {})
  }

  /**
   * State-vector sync with one peer: we send our state vector, the peer answers with what we
   * miss plus its own state vector, we send what it misses. At most one runs per peer.
   */
  async sync (peer: string): Promise<void> {
    if (this.stopped || this.syncing.has(peer)) return
    this.syncing.add(peer)
    const signal = AbortSignal.timeout(SYNC_TIMEOUT_MS)
    try {
      const stream = await this.libp2p.dialProtocol(peerIdFromString(peer), SYNC_PROTOCOL, { signal })
      const lp = lpStream(stream, { maxDataLength: MAX_SYNC_MESSAGE_BYTES })
      await lp.write(this.init.doc.stateVector(), { signal })
      const missing = await lp.read({ signal })
      const theirSv = await lp.read({ signal })
      this.stats.syncs++
      const result = this.init.doc.applyRemote(missing.subarray())
      if (!result.applied) this.log.warn({ peer, reason: result.reason }, 'sync update dropped')
      await lp.write(this.init.doc.diff(theirSv.subarray()), { signal })
      await stream.close({ signal })
    } catch (err) {
      if (!this.stopped) this.log.debug({ err, peer }, 'sync failed')
    } finally {
      this.syncing.delete(peer)
    }
  }

  private async answerSync (stream: Stream, connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(SYNC_TIMEOUT_MS)
    const lp = lpStream(stream, { maxDataLength: MAX_SYNC_MESSAGE_BYTES })
    const theirSv = await lp.read({ signal })
    await lp.write(this.init.doc.diff(theirSv.subarray()), { signal })
    await lp.write(this.init.doc.stateVector(), { signal })
    const missing = await lp.read({ signal })
    const result = this.init.doc.applyRemote(missing.subarray())
    if (!result.applied) this.log.warn({ peer: connection.remotePeer.toString(), reason: result.reason }, 'sync update dropped')
    await stream.close({ signal })
  }

  private every (ms: number, fn: () => void): void {
    const timer = setInterval(fn, ms)
    timer.unref()
    this.timers.add(timer)
  }

  private onDelta (sender: string, data: Uint8Array): void {
    this.stats.deltasReceived++
    const result = this.init.doc.applyRemote(data, sender)
    if (!result.applied) {
      this.stats.deltasRejected++
      this.log.debug({ peer: sender, reason: result.reason }, 'state delta dropped')
    }
    // a delta we cannot place, or one Yjs parks for a missing predecessor: repair by sync
    if ((!result.applied && result.reason === 'unresolved') || this.init.doc.hasPending()) {
      void this.sync(sender)
    }
  }

  private onHeartbeat (sender: string, data: Uint8Array): void {
    let hb: Heartbeat | undefined
    if (data.length <= MAX_HEARTBEAT_BYTES) {
      try {
        const parsed = HeartbeatSchema.safeParse(JSON.parse(new TextDecoder().decode(data)))
        if (parsed.success) hb = parsed.data
      } catch {}
    }
    if (hb == null) {
      this.stats.heartbeatsDropped++
      return
    }
    this.stats.heartbeatsReceived++
    const before = this.membership.get(sender)?.state
    if (!this.membership.heard(sender, hb)) return
    const after = this.membership.get(sender)?.state
    if (before !== after) this.log.info({ peer: sender, from: before ?? 'unknown', to: after }, 'member state')
    // a peer we hear of but hold no record for: its record is missing here, sync
    if (hb.status === 'alive' && this.init.doc.get(sender) == null) void this.sync(sender)
  }

  private sendHeartbeat (status: Heartbeat['status']): Promise<void> {
    if (this.node == null || (this.stopped && status !== 'left')) return Promise.resolve()
    const hb: Heartbeat = { v: 1, incarnation: this.init.incarnation, seq: ++this.seq, status, metrics: this.init.metrics() }
    const data = new TextEncoder().encode(JSON.stringify(hb))
    this.stats.heartbeatsSent++
    this.stats.bytesPublished += data.length
    return this.node.services.pubsub.publish(metricsTopic(this.init.clusterId), data).then(() => {}, (err: unknown) => {
      this.log.debug({ err: (err as Error).message }, 'heartbeat publish failed')
    })
  }

  /** Members as heard on the metrics topic. */
  members (): Member[] {
    return this.membership.list()
  }

  /**
   * The pruning rule, the same on every peer: an entry may be deleted once its record has not
   * been refreshed for pruneAfterMs (owners refresh well within that) and its peer is neither
   * alive nor suspect here. Clock skew between hosts up to pruneAfterMs*(1-RECORD_REFRESH_FRACTION) is tolerated.
   */
  private prunable (key: string): boolean {
    if (key === this.peerId || this.membership.isUsable(key)) return false
    const record = this.init.doc.get(key)
    if (record == null) return true
    return this.now() - record.updatedAt >= (this.init.timings ?? LAN_TIMINGS).pruneAfterMs
  }

  /** Deletes long-dead entries; only the usable peer with the smallest id does it, so once. */
  private pruneDead (): void {
    this.membership.prune()
    const usable = [this.peerId, ...this.connectedPeers().filter((p) => this.membership.isUsable(p))].sort()
    if (usable[0] !== this.peerId) return
    const gone = this.init.doc.records().map((r) => r.peerId).filter((id) => this.prunable(id))
    if (gone.length > 0 && this.init.doc.prune(gone) > 0) this.log.info({ peers: gone }, 'pruned dead entries')
  }

  /** Dials every bootstrap address now and again every BOOTSTRAP_REDIAL_MS while unconnected. */
  private dialBootstrap (): void {
    const addrs = this.init.bootstrap ?? []
    if (addrs.length === 0) return
    const dialAll = (): void => {
      for (const addr of addrs) {
        let ma
        try {
          ma = multiaddr(addr)
        } catch (err) {
          this.log.error({ addr, err }, 'bad bootstrap address, skipped')
          continue
        }
        const peer = ma.getComponents().find((c) => c.name === 'p2p')?.value
        if (peer != null && this.libp2p.getConnections(peerIdFromString(peer)).length > 0) continue
        this.libp2p.dial(ma).catch((err: unknown) => {
          this.log.debug({ addr, err: err instanceof Error ? err.message : String(err) }, 'bootstrap dial failed')
        })
      }
    }
    dialAll()
    const timer = setInterval(dialAll, BOOTSTRAP_REDIAL_MS)
    timer.unref()
    this.timers.add(timer)
  }

  /**
   * Graceful leave: tells the mesh we are going ('left'), so peers stop routing here at once
   * instead of waiting for the silence timeout.
   */
  async leave (): Promise<void> {
    if (this.node == null || this.stopped) return
    await this.sendHeartbeat('left')
  }

  async stop (): Promise<void> {
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
    this.timers.clear()
    this.unsubscribeDoc?.()
    await this.node?.stop()
  }
}

export type { PeerId }
