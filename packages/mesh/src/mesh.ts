import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, type Identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { ping, type Ping } from '@libp2p/ping'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { preSharedKey } from '@libp2p/pnet'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Connection, PeerDiscovery, PeerId, PeerInfo, PrivateKey, Stream } from '@libp2p/interface'
import type { Logger } from 'pino'
import {
  SYNC_PROTOCOL, INFER_PROTOCOL, METRICS_PROTOCOL, HeartbeatSchema, MAX_HEARTBEAT_BYTES, stateTopic,
  type Heartbeat, type InferRequest, type NodeRecord, type PeerMetrics, type Signal
} from '@llmesh/protocol'
import type { ClusterDoc } from '@llmesh/state'
import {
  ANTI_ENTROPY_INTERVAL_MS, BOOTSTRAP_REDIAL_MS, MAX_HEARTBEATS_IN_PER_SEC, DIAL_TIEBREAK_MS, FIRST_DIAL_TIMEOUT_MS, RECONNECT_TICK_MS, MAX_HEARTBEATS_PER_SEC, MEMBER_WATCH_MS, NUDGE_MS, LEAVE_TIMEOUT_MS, MAX_PENDING_INBOUND, RECONNECT_DIAL_TIMEOUT_MS, RECONNECT_INTERVAL_MS, RECONNECT_MAX_BACKOFF_MS, HEARTBEAT_INTERVAL_MS, MAX_INFER_STREAMS, MAX_SYNC_MESSAGE_BYTES, MDNS_INTERVAL_MS,
  PING_INTERVAL_MS, PRUNE_CHECK_INTERVAL_MS, RECORD_REFRESH_FRACTION, SYNC_TIMEOUT_MS
} from './constants.js'
import { LAN_TIMINGS, Membership, type Member, type MembershipTimings } from './membership.js'
import { InferLimits, InferStreams, type InferLimitsInit, type InferRefusal, type InferResponse, type InferTimeouts } from './infer-stream.js'
import { ClampReasons, HeartbeatRate, clampHeartbeat, type ClampReason } from './heartbeat-bounds.js'
import { connectionSecret, mdnsServiceTag, swarmKey } from './cluster-key.js'
import { MAX_STREAM_WINDOW_BYTES, framed, noiseOneWritePerMessage, yamuxWindowUpdates, type FramedStream } from './wire.js'

export interface MeshInit {
  /** peers of other clusters never mix: without a key, the connection secret is derived from this id */
  clusterId: string
  /**
   * The cluster key (32 bytes, lab mode): the private-network pre-shared key every connection is
   * protected with, so a host without it cannot complete a connection. Without one the secret is
   * derived from the cluster id (see connectionSecret). @default none
   */
  clusterKey?: Uint8Array
  privateKey: PrivateKey
  /** multiaddrs to listen on, e.g. /ip4/127.0.0.1/tcp/0 */
  listen: string[]
  /** multiaddrs dialled at start and re-dialled while not connected */
  bootstrap?: string[]
  doc: ClusterDoc
  logger: Logger
  /**
   * Multicast DNS discovery on the LAN, under a service name hashed from the connection secret. Never enable it where multicast
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
  /** what each peer may hold on inbound `/llmesh/infer/1` streams (see InferLimits). @default InferLimits' defaults */
  inferLimits?: InferLimitsInit
}

/** Counters a test or `llmesh status` can read. */
export interface MeshStats {
  heartbeatsSent: number
  /** identify exchanges completed (new connections, identify pushes) */
  identified: number
  heartbeatsReceived: number
  heartbeatsDropped: number
  deltasPublished: number
  deltasReceived: number
  deltasRejected: number
  syncs: number
  bytesPublished: number
  bytesReceived: number
  /** exceptions caught in a timer or handler that handles peer data (each also logged) */
  handlerErrors: number
  /** heartbeats dropped because their peer sent more than MAX_HEARTBEATS_IN_PER_SEC */
  heartbeatsRateLimited: number
  /** heartbeat figures held to their bounds, by reason (see clampHeartbeat) */
  heartbeatClamps: Record<ClampReason, number>
  /** inbound infer streams and requests refused or cut, by reason (see InferLimits) */
  inferRefused: Record<InferRefusal, number>
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
  /** outbound heartbeat stream per peer (opening or open) */
  private readonly metricStreams = new Map<string, { ready: Promise<{ stream: Stream, lp: FramedStream }> }>()
  /** peers from the cluster document being dialled now, and when to try each again */
  private readonly redialAt = new Map<string, { at: number, failures: number, pending: boolean }>()
  private unsubscribeDoc?: () => void
  private unsubscribeMembers?: () => void
  private stopped = false
  private seq = 0
  private readonly now: () => number
  private readonly inferStreams = new InferStreams(async (peerId, signal) => await this.open(peerId, INFER_PROTOCOL, signal))
  readonly membership: Membership
  /** per-peer limits of inbound infer streams: pass `{ peer, limits }` to serveInfer */
  readonly inferLimits: InferLimits
  private readonly heartbeatRate = new HeartbeatRate(MAX_HEARTBEATS_IN_PER_SEC)
  readonly stats: MeshStats

  constructor (init: MeshInit) {
    this.init = init
    this.inferLimits = new InferLimits(init.inferLimits)
    this.stats = {
      heartbeatsSent: 0, identified: 0, heartbeatsReceived: 0, heartbeatsDropped: 0, deltasPublished: 0, deltasReceived: 0,
      deltasRejected: 0, syncs: 0, bytesPublished: 0, bytesReceived: 0, handlerErrors: 0, heartbeatsRateLimited: 0,
      heartbeatClamps: Object.fromEntries(ClampReasons.map((r) => [r, 0])) as Record<ClampReason, number>,
      inferRefused: this.inferLimits.refused
    }
    this.log = init.logger.child({ component: 'mesh' })
    this.now = init.now ?? Date.now
    this.membership = new Membership(init.timings ?? LAN_TIMINGS, this.now, init.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS)
    init.doc.bindPruneRule((key, last) => this.prunable(key, last))
  }

  get peerId (): string {
    return this.libp2p.peerId.toString()
  }

  private get libp2p (): Libp2p<Services> {
    if (this.node == null) throw new Error('mesh is not started')
    return this.node
  }

  async start (): Promise<void> {
    const secret = connectionSecret(this.init.clusterId, this.init.clusterKey)
    const node = await createLibp2p({
      privateKey: this.init.privateKey,
      addresses: { listen: this.init.listen },
      transports: [tcp()],
      // every connection first proves it holds the cluster's secret (XSalsa20 with a pre-shared
      // key): a host of another cluster, or without the key, never reaches noise or any protocol
      connectionProtector: preSharedKey({ psk: swarmKey(secret) }),
      connectionEncrypters: [noiseOneWritePerMessage()],
      streamMuxers: [yamuxWindowUpdates(yamux({ streamOptions: { maxStreamWindowSize: MAX_STREAM_WINDOW_BYTES } }))],
      connectionMonitor: { pingInterval: PING_INTERVAL_MS },
      // a cluster starting at once has every agent upgrading many inbound connections together;
      // libp2p's default of 10 pending would refuse most of them and stretch the start
      connectionManager: { maxIncomingPendingConnections: MAX_PENDING_INBOUND },
      services: {
        // a service rather than a peerDiscovery entry, so its 'peer' events reach us for peers
        // libp2p already knows (the node-level 'peer:discovery' fires only for new ones)
        ...(this.init.mdns?.enabled === true
          ? { mdns: mdns({ serviceTag: mdnsServiceTag(secret), interval: this.init.mdns.intervalMs ?? MDNS_INTERVAL_MS }) }
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

    node.services.pubsub.subscribe(topic)
    node.services.pubsub.addEventListener('message', (evt) => {
      const msg = evt.detail
      if (msg.type !== 'signed' || msg.topic !== topic) return
      this.guard('state delta', () => {
        const sender = msg.from.toString()
        if (sender === this.peerId) return
        this.stats.bytesReceived += msg.data.length
        this.onDelta(sender, msg.data)
      })
    })
    this.unsubscribeMembers = this.init.doc.onMembershipChange((added, removed) => {
      for (const peer of added) if (peer !== this.peerId) this.log.info({ peer }, 'peer record added')
      for (const peer of removed) this.log.info({ peer }, 'peer record removed')
      // (our own entry deleted or replaced by anyone: the document writes it again itself)
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

    await node.handle(METRICS_PROTOCOL, (stream, connection) => {
      void this.readHeartbeats(stream, connection.remotePeer.toString())
    })
    node.addEventListener('peer:identify', (evt) => {
      const peer = evt.detail.peerId.toString()
      this.stats.identified++
      // every new connection starts with a state-vector sync, both ways, and a heartbeat
      void this.sync(peer)
      void this.heartbeatTo(peer, this.encodeHeartbeat('alive'))
    })
    // libp2p does not redial a known peer after a partition: every discovery answer is a chance to
    const redial = (evt: CustomEvent<PeerInfo>): void => {
      const { id, multiaddrs } = evt.detail
      void this.dialPeer(id.toString(), multiaddrs.length > 0 ? multiaddrs : undefined)
    }
    node.addEventListener('peer:discovery', redial)
    const discovery = (node.services as Partial<Record<'mdns', PeerDiscovery>>).mdns
    discovery?.addEventListener('peer', redial)

    this.dialBootstrap()
    this.every(RECONNECT_TICK_MS, () => { this.reconnectKnown() })
    this.every(MEMBER_WATCH_MS, () => { this.watchMembers() })
    this.scheduleHeartbeat()
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

  /** Open connections per peer (more than one means both sides dialled at once). */
  connectionCount (): number {
    return this.libp2p.getConnections().length
  }

  connectedPeers (): string[] {
    // not libp2p.getPeers(): it rebuilds every PeerId from its string (a base58 decode and a
    // key parse each), a tenth of the agent's CPU per routed request when it ran per request;
    // a connection's remotePeer caches its string
    const peers = new Set<string>()
    for (const c of this.libp2p.getConnections()) peers.add(c.remotePeer.toString())
    return [...peers]
  }

  /** Serves a protocol on inbound streams. Errors in the handler abort that stream only. */
  async handle (protocol: typeof INFER_PROTOCOL, handler: StreamHandler): Promise<void> {
    await this.libp2p.handle(protocol, (stream, connection) => {
      const remote = connection.remotePeer.toString()
      handler(stream, remote).catch((err: unknown) => {
        this.log.warn({ err, peer: remote, protocol }, 'stream handler failed')
        stream.abort(err instanceof Error ? err : new Error(String(err)))
      })
    }, { maxInboundStreams: MAX_INFER_STREAMS, maxOutboundStreams: MAX_INFER_STREAMS })
  }

  /**
   * Sends an inference request to a peer over `/llmesh/infer/1` and returns its answer (see
   * requestInfer), on an idle stream to that peer when one is left from an earlier request.
   */
  async infer (peerId: string, request: InferRequest, signal?: Signal, timeouts?: InferTimeouts): Promise<InferResponse> {
    return await this.inferStreams.request(peerId, request, signal, timeouts)
  }

  /** Opens a stream of `protocol` to a peer, dialling it if needed. */
  async open (peerId: string, protocol: typeof INFER_PROTOCOL, signal?: AbortSignal): Promise<Stream> {
    // (multistream-select declares `negotiateFully: false` but does not implement it in this
    // libp2p: every new stream costs a negotiation round trip, which is why InferStreams keeps
    // streams for later requests)
    const opts = signal != null ? { signal } : {}
    // an open connection takes the stream directly: libp2p's dialProtocol goes through the dial
    // queue and the peer store first, about 1 ms per request measured on loopback
    const conn = this.libp2p.getConnections(peerIdFromString(peerId)).find((c) => c.status === 'open')
    if (conn != null) return await conn.newStream(protocol, opts)
    return await this.libp2p.dialProtocol(peerIdFromString(peerId), protocol, opts)
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
      const lp = framed(stream, { maxDataLength: MAX_SYNC_MESSAGE_BYTES })
      await lp.write(this.init.doc.stateVector(), { signal })
      const missing = await lp.read({ signal })
      const theirSv = await lp.read({ signal })
      this.stats.syncs++
      const result = this.applyRemote(missing)
      if (!result.applied) this.log.warn({ peer, reason: result.reason }, 'sync update dropped')
      await lp.write(this.init.doc.diff(theirSv), { signal })
      await stream.close({ signal })
    } catch (err) {
      if (!this.stopped) this.log.debug({ err, peer }, 'sync failed')
    } finally {
      this.syncing.delete(peer)
    }
  }

  private async answerSync (stream: Stream, connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(SYNC_TIMEOUT_MS)
    const lp = framed(stream, { maxDataLength: MAX_SYNC_MESSAGE_BYTES })
    const theirSv = await lp.read({ signal })
    await lp.write(this.init.doc.diff(theirSv), { signal })
    await lp.write(this.init.doc.stateVector(), { signal })
    const missing = await lp.read({ signal })
    const result = this.applyRemote(missing)
    if (!result.applied) this.log.warn({ peer: connection.remotePeer.toString(), reason: result.reason }, 'sync update dropped')
    await stream.close({ signal })
  }

  private every (ms: number, fn: () => void): void {
    const timer = setInterval(() => { this.guard('timer', fn) }, ms)
    timer.unref()
    this.timers.add(timer)
  }

  /** Runs a timer body or handler that touches peer data: nothing it throws may take the agent down. */
  private guard (what: string, fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.stats.handlerErrors++
      this.log.warn({ err, what }, 'handler failed')
    }
  }

  /**
   * Each peer's last heartbeat as it was sent: a heartbeat often arrives before the record change
   * that allows its figures (a runner just ready: the record's delta is on its way by gossip),
   * and the clamp would hold the host at 0 slots until its next heartbeat. So the figures are
   * clamped again whenever a remote change reached the document.
   */
  private readonly lastHeartbeats = new Map<string, Heartbeat>()

  private reclamp (): void {
    for (const [peer, hb] of this.lastHeartbeats) {
      if (!this.membership.remetric(peer, clampHeartbeat(hb, peer, this.init.doc).heartbeat.metrics)) this.lastHeartbeats.delete(peer)
    }
  }

  /** Applies a remote update to the cluster document; a change re-clamps the heartbeats held. */
  private applyRemote (update: Uint8Array, sender?: string): ReturnType<ClusterDoc['applyRemote']> {
    const result = this.init.doc.applyRemote(update, sender)
    if (result.applied) this.reclamp()
    return result
  }

  private onDelta (sender: string, data: Uint8Array): void {
    this.stats.deltasReceived++
    const result = this.applyRemote(data, sender)
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
    if (!this.heartbeatRate.allow(sender, this.now())) {
      this.stats.heartbeatsRateLimited++
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
      this.stats.heartbeatsDropped++
      return
    }
    this.stats.heartbeatsReceived++
    // what a peer says of itself is held to what its record in the cluster document allows
    const bounded = clampHeartbeat(hb, sender, this.init.doc)
    for (const reason of bounded.reasons) this.stats.heartbeatClamps[reason]++
    if (!this.membership.heard(sender, bounded.heartbeat)) return
    this.lastHeartbeats.set(sender, hb)
    hb = bounded.heartbeat
    const after = this.membership.get(sender)?.state ?? 'unknown'
    const before = this.lastStates.get(sender)
    if (before !== after) {
      this.lastStates.set(sender, after)
      this.log.info({ peer: sender, from: before ?? 'unknown', to: after }, 'member state')
    }
    // a peer we hear of but hold no record for: its record is missing here, sync
    if (hb.status === 'alive' && this.init.doc.get(sender) == null) void this.sync(sender)
  }

  /**
   * The heartbeat period: the configured base, stretched once this agent would send more than
   * MAX_HEARTBEATS_PER_SEC (one heartbeat per peer per period, in a fully connected mesh the
   * cost grows with N²). Each heartbeat announces the period, so receivers stretch their
   * silence thresholds alike: 20 hosts detect a cut in about 3 s instead of 1.5 s, and stay
   * within a small machine's means.
   */
  heartbeatIntervalMs (): number {
    const base = this.init.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS
    const peers = this.node == null ? 0 : this.node.getPeers().length
    return Math.max(base, Math.round(peers * 1000 / MAX_HEARTBEATS_PER_SEC))
  }

  private scheduleHeartbeat (): void {
    if (this.stopped) return
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      void this.sendHeartbeat('alive')
      this.scheduleHeartbeat()
    }, this.heartbeatIntervalMs())
    timer.unref()
    this.timers.add(timer)
  }

  private nudgeTimer?: NodeJS.Timeout

  /**
   * Sends a heartbeat soon rather than at the next tick, because what it carries changed in a
   * way other agents should see (this router's claims on a host): NUDGE_MS after the first
   * change, carrying every change made meanwhile.
   */
  nudge (): void {
    if (this.stopped || this.nudgeTimer != null) return
    this.nudgeTimer = setTimeout(() => {
      this.nudgeTimer = undefined
      void this.sendHeartbeat('alive')
    }, NUDGE_MS)
    this.nudgeTimer.unref()
  }

  private encodeHeartbeat (status: Heartbeat['status']): Uint8Array {
    const hb: Heartbeat = {
      v: 1, incarnation: this.init.incarnation, seq: ++this.seq, status, intervalMs: this.heartbeatIntervalMs(), metrics: this.init.metrics()
    }
    return new TextEncoder().encode(JSON.stringify(hb, omitDefaults))
  }

  /** One heartbeat to every connected peer, each on its own metrics stream. */
  private async sendHeartbeat (status: Heartbeat['status']): Promise<void> {
    if (this.node == null || (this.stopped && status !== 'left')) return
    const data = this.encodeHeartbeat(status)
    await Promise.all(this.connectedPeers().map(async (peer) => { await this.heartbeatTo(peer, data) }))
  }

  /** Writes a heartbeat on the outbound metrics stream to `peer`, opening it when needed. */
  private async heartbeatTo (peer: string, data: Uint8Array): Promise<void> {
    let out = this.metricStreams.get(peer)
    try {
      if (out == null) {
        const opening = this.libp2p.dialProtocol(peerIdFromString(peer), METRICS_PROTOCOL, { signal: AbortSignal.timeout(SYNC_TIMEOUT_MS) })
          .then((stream) => ({ stream, lp: framed(stream, { maxDataLength: MAX_HEARTBEAT_BYTES }) }))
        out = { ready: opening }
        this.metricStreams.set(peer, out)
      }
      const { lp } = await out.ready
      await lp.write(data, { signal: AbortSignal.timeout(SYNC_TIMEOUT_MS) })
      this.stats.heartbeatsSent++
      this.stats.bytesPublished += data.length
    } catch (err) {
      // the stream broke (peer gone, link cut): the next tick opens a new one if still connected
      if (this.metricStreams.get(peer) === out) this.metricStreams.delete(peer)
      void out?.ready.then(({ stream }) => { stream.abort(new Error('heartbeat write failed')) }, () => {})
      this.log.debug({ peer, err: (err as Error).message }, 'heartbeat not sent')
    }
  }

  /** Reads a peer's heartbeats from its metrics stream until the stream ends. */
  private async readHeartbeats (stream: Stream, peer: string): Promise<void> {
    const lp = framed(stream, { maxDataLength: MAX_HEARTBEAT_BYTES })
    try {
      while (!this.stopped) {
        const frame = await lp.read()
        this.stats.bytesReceived += frame.byteLength
        this.onHeartbeat(peer, frame)
      }
    } catch {
      // stream ended or sent an oversize frame: the peer opens a new one
    } finally {
      stream.abort(new Error('metrics stream closed'))
    }
  }

  private readonly lastStates = new Map<string, string>()

  /**
   * Logs state changes that silence caused (heartbeats only report the ones they cause), and
   * hangs up on peers found dead: their connection is likely a corpse, and the redial pass
   * brings them back over a fresh one once they answer again.
   */
  private watchMembers (): void {
    for (const m of this.membership.list()) {
      const before = this.lastStates.get(m.peerId)
      if (before !== m.state) {
        this.lastStates.set(m.peerId, m.state)
        if (before != null) this.log.info({ peer: m.peerId, from: before, to: m.state }, 'member state')
      }
      if (m.state === 'dead') this.probeDead(m.peerId)
    }
  }

  /**
   * A peer silent long enough to be dead may sit behind a corpse connection (link cut: TCP
   * notices only after minutes) or behind a live one that is merely slow (a loaded host). Hanging
   * up on it would turn slowness into reconnection churn, so instead: dial it afresh beside the
   * old connection (short timeout, once per RECONNECT_INTERVAL_MS). If that succeeds, the link is
   * back: the old connection is closed and heartbeats resume on the new one.
   */
  private probeDead (peer: string): void {
    const now = this.now()
    const entry = this.redialAt.get(peer) ?? { at: 0, failures: 0, pending: false }
    if (entry.pending || now < entry.at) return
    let id: PeerId
    let addrs: Multiaddr[]
    try {
      id = peerIdFromString(peer)
      addrs = (this.init.doc.get(peer)?.addrs ?? []).map((a) => multiaddr(a))
    } catch (err) {
      this.stats.handlerErrors++
      this.log.warn({ peer, err: (err as Error).message }, 'peer not probed: bad id or address')
      return
    }
    if (addrs.length === 0) return
    const old = this.libp2p.getConnections(id)
    if (old.length === 0) return // the redial pass handles unconnected peers
    entry.pending = true
    entry.at = now + RECONNECT_INTERVAL_MS
    this.redialAt.set(peer, entry)
    this.libp2p.dial(addrs, { force: true, signal: AbortSignal.timeout(RECONNECT_DIAL_TIMEOUT_MS) }).then((conn) => {
      entry.pending = false
      this.metricStreams.delete(peer)
      for (const c of old) if (c.id !== conn.id) void c.close().catch(() => {})
    }, () => {
      entry.pending = false
    })
  }

  /** Members as heard from their heartbeats. */
  members (): Member[] {
    return this.membership.list()
  }

  /**
   * The pruning rule, the same on every peer: an entry may be deleted once its record has not
   * been refreshed for pruneAfterMs (owners refresh well within that) and its peer is neither
   * alive nor suspect here. Clock skew between hosts up to pruneAfterMs*(1-RECORD_REFRESH_FRACTION) is tolerated.
   */
  private prunable (key: string, record: NodeRecord | undefined): boolean {
    if (key === this.peerId || this.membership.isUsable(key)) return false
    if (record == null) return true
    return this.now() - record.updatedAt >= (this.init.timings ?? LAN_TIMINGS).pruneAfterMs
  }

  /** Deletes long-dead entries; only the usable peer with the smallest id does it, so once. */
  private pruneDead (): void {
    this.membership.prune()
    const usable = [this.peerId, ...this.connectedPeers().filter((p) => this.membership.isUsable(p))].sort()
    if (usable[0] !== this.peerId) return
    // entries that fail verification count as having no record: junk keys go too
    const doc = this.init.doc
    const gone = [...new Set([...doc.keys(), ...doc.records().map((r) => r.peerId)])].filter((id) => this.prunable(id, doc.get(id)))
    if (gone.length > 0 && this.init.doc.prune(gone) > 0) this.log.info({ peers: gone }, 'pruned dead entries')
  }

  /**
   * Keeps the cluster fully connected: dials every peer of the cluster document we hold no
   * connection to (by the addresses in its record), with a per-peer exponential backoff up to
   * RECONNECT_MAX_BACKOFF_MS. This is what brings a healed link back within about a second,
   * with or without multicast, and joins peers that only share a bootstrap host.
   */
  private reconnectKnown (): void {
    const now = this.now()
    for (const record of this.init.doc.records()) {
      const peer = record.peerId
      if (peer === this.peerId || record.addrs.length === 0 || this.membership.get(peer)?.state === 'left') continue
      let id: PeerId
      try {
        id = peerIdFromString(peer)
      } catch {
        continue
      }
      if (this.libp2p.getConnections(id).length > 0) {
        this.redialAt.delete(peer)
        continue
      }
      const entry = this.redialAt.get(peer) ?? { at: 0, failures: 0, pending: false }
      if (entry.pending || now < entry.at) continue
      const attemptAt = now
      let addrs
      try {
        addrs = record.addrs.map((a) => multiaddr(a))
      } catch {
        continue
      }
      entry.pending = true
      this.redialAt.set(peer, entry)
      // a peer we were connected to gets short attempts (a heal is noticed within a second); a
      // peer we never reached gets the patient first-dial timeout (handshakes may queue at start)
      const timeout = this.membership.get(peer) != null ? RECONNECT_DIAL_TIMEOUT_MS : FIRST_DIAL_TIMEOUT_MS
      void this.dialPeer(peer, addrs, timeout).then((ok) => {
        entry.pending = false
        if (ok) {
          this.redialAt.delete(peer)
          return
        }
        entry.failures++
        // counted from the attempt's start: a dial that timed out is retried at once
        entry.at = attemptAt + Math.min(RECONNECT_MAX_BACKOFF_MS, RECONNECT_INTERVAL_MS * 2 ** (entry.failures - 1))
      })
    }
  }

  /**
   * Dials a peer unless connected. When two peers find each other at once, both would dial and
   * hold two connections (double heartbeats, double pings); so the peer with the smaller id
   * dials at once and the other only if still unconnected after DIAL_TIEBREAK_MS.
   */
  private async dialPeer (peer: string, addrs?: Multiaddr[], timeoutMs = FIRST_DIAL_TIMEOUT_MS): Promise<boolean> {
    if (this.stopped || peer === this.peerId) return false
    let id: PeerId
    try {
      id = peerIdFromString(peer)
    } catch {
      return false
    }
    const node = this.libp2p
    if (node.getConnections(id).length > 0) return true
    if (this.peerId > peer) {
      await new Promise((resolve) => setTimeout(resolve, DIAL_TIEBREAK_MS).unref())
      if (this.stopped) return false
      if (node.getConnections(id).length > 0) return true
    }
    try {
      await node.dial(addrs ?? id, { signal: AbortSignal.timeout(timeoutMs) })
      return true
    } catch (err) {
      this.log.debug({ peer, err: (err as Error).message }, 'dial failed')
      return false
    }
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
    this.guard('bootstrap', dialAll)
    const timer = setInterval(() => { this.guard('bootstrap', dialAll) }, BOOTSTRAP_REDIAL_MS)
    timer.unref()
    this.timers.add(timer)
  }

  /**
   * Graceful leave: tells the mesh we are going ('left'), so peers stop routing here at once
   * instead of waiting for the silence timeout.
   */
  async leave (): Promise<void> {
    if (this.node == null || this.stopped) return
    await Promise.race([this.sendHeartbeat('left'), new Promise((resolve) => setTimeout(resolve, LEAVE_TIMEOUT_MS))])
  }

  async stop (): Promise<void> {
    this.stopped = true
    for (const t of this.timers) clearTimeout(t)
    clearTimeout(this.nudgeTimer)
    this.timers.clear()
    this.unsubscribeDoc?.()
    this.unsubscribeMembers?.()
    this.inferStreams.close()
    await this.node?.stop()
  }
}

export type { PeerId }

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
