import type { PrivateKey, Stream } from '@libp2p/interface'
import { INFER_PROTOCOL, type Clock, type InferRequest, type Logger, type PeerMetrics, type Signal } from '@llmesh/protocol'
import type { ClusterDoc } from '@llmesh/state'
import { HEARTBEAT_INTERVAL_MS, LEAVE_TIMEOUT_MS } from './constants.js'
import { systemClock } from '@llmesh/kit'
import { DocSync } from './doc-sync.js'
import { Dialer } from './dialer.js'
import { Heartbeats } from './heartbeats.js'
import { InferChannel, type StreamHandler } from './infer.js'
import type { InferLimits, InferLimitsInit, InferResponse, InferTimeouts } from './infer-stream.js'
import { Libp2pTransport, type MdnsInit } from './libp2p-transport.js'
import type { Member, Membership, MembershipTimings } from './membership.js'
import { Pruner } from './pruner.js'
import { RpcTunnels, type RpcTunnelsInit } from './rpc-tunnel.js'
import { newMeshStats, type MeshStats } from './stats.js'
import type { Transport } from './transport.js'

export type { MeshStats } from './stats.js'
export type { StreamHandler } from './infer.js'

export interface MeshInit {
  /** peers of other clusters never mix: without a key, the connection secret is derived from this id */
  clusterId: string
  /**
   * The cluster key (32 bytes, lab mode): the private-network pre-shared key every connection is
   * protected with, so a host without it cannot complete a connection. Without one the secret is
   * derived from the cluster id (see connectionSecret). @default none
   */
  clusterKey?: Uint8Array
  /** this node's key (libp2p transport: required) */
  privateKey?: PrivateKey
  /** multiaddrs to listen on, e.g. /ip4/127.0.0.1/tcp/0 (libp2p transport: required) */
  listen?: string[]
  /** multiaddrs dialled at start and re-dialled while not connected */
  bootstrap?: string[]
  doc: ClusterDoc
  logger: Logger
  /** multicast DNS discovery (see MdnsInit). @default off */
  mdns?: MdnsInit
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
  /** injected time source, for tests (timers stay real unless `clock` is given). @default Date.now */
  now?: () => number
  /** injected clock (time and timers) for every part. @default the system clock, with `now` if given */
  clock?: Clock
  /** randomness (the anti-entropy peer). @default Math.random */
  random?: () => number
  /** the transport; privateKey, listen, clusterKey and mdns are then unused. @default libp2p (Libp2pTransport) */
  transport?: Transport
  /** what each peer may hold on inbound `/llmesh/infer/1` streams (see InferLimits). @default InferLimits' defaults */
  inferLimits?: InferLimitsInit
  /** bounds of the llama.cpp RPC tunnels (see RpcTunnels). @default RpcTunnels' defaults */
  rpcTunnels?: RpcTunnelsInit
}

/**
 * The mesh of one agent, composed of parts over one transport: DocSync (the cluster document's
 * gossip and sync), Heartbeats (with Membership), Dialer (connections), Pruner (long-dead
 * peers), InferChannel (peer-to-peer requests) and RpcTunnels (llama.cpp RPC to members'
 * loopback rpc-servers). It carries state; it decides nothing about routing.
 */
export class Mesh {
  readonly membership: Membership
  /** per-peer limits of inbound infer streams: pass `{ peer, limits }` to serveInfer */
  readonly inferLimits: InferLimits
  readonly stats: MeshStats
  /**
   * llama.cpp RPC over the mesh: `serve` (member) and `listen` (coordinator) once started. A
   * peer found dead has its tunnel sockets and streams cut (closePeer).
   */
  readonly rpc: RpcTunnels
  private readonly transport: Transport
  private readonly docSync: DocSync
  private readonly heartbeats: Heartbeats
  private readonly dialer: Dialer
  private readonly pruner: Pruner
  private readonly inferChannel: InferChannel
  private readonly log: Logger
  private readonly clock: Clock
  private unsubscribeMembers?: () => void
  private readonly baseIntervalMs: number
  private started = false
  private stopped = false

  constructor (init: MeshInit) {
    this.log = init.logger.child({ component: 'mesh' })
    const clock = init.clock ?? (init.now != null ? { ...systemClock, now: init.now } : systemClock)
    this.clock = clock
    this.baseIntervalMs = init.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS
    const log = this.log
    this.transport = init.transport ?? new Libp2pTransport({
      clusterId: init.clusterId,
      privateKey: required(init.privateKey, 'privateKey'),
      listen: required(init.listen, 'listen'),
      ...(init.clusterKey != null ? { clusterKey: init.clusterKey } : {}),
      ...(init.mdns != null ? { mdns: init.mdns } : {}),
      log: (fields, msg) => { log.warn(fields, msg) }
    })
    this.inferChannel = new InferChannel(this.transport, clock, log, init.inferLimits)
    this.inferLimits = this.inferChannel.limits
    this.stats = newMeshStats(this.inferLimits.refused)
    this.rpc = new RpcTunnels(this.transport, log, init.rpcTunnels)
    const { doc } = init
    const shared = { doc, stats: this.stats }
    this.heartbeats = new Heartbeats(this.transport, clock, log, {
      ...shared,
      incarnation: init.incarnation,
      metrics: init.metrics,
      ...(init.heartbeatIntervalMs != null ? { intervalMs: init.heartbeatIntervalMs } : {}),
      ...(init.timings != null ? { timings: init.timings } : {}),
      onUnknownPeer: (peer) => { void this.docSync.sync(peer) },
      onDead: (peer) => {
        this.dialer.probe(peer)
        // a coordinator's rpc socket must not hang on a half-dead link: llama-server fails at once
        this.rpc.closePeer(peer)
      }
    })
    this.membership = this.heartbeats.membership
    this.docSync = new DocSync(this.transport, clock, log, {
      ...shared,
      clusterId: init.clusterId,
      ...(init.random != null ? { random: init.random } : {}),
      onRemoteApplied: () => { this.heartbeats.reclamp() }
    })
    this.dialer = new Dialer(this.transport, clock, log, {
      ...shared,
      membership: this.membership,
      ...(init.bootstrap != null ? { bootstrap: init.bootstrap } : {}),
      onReconnected: (peer) => { this.heartbeats.forget(peer) }
    })
    this.pruner = new Pruner(this.transport, clock, log, {
      ...shared,
      membership: this.membership,
      ...(init.timings != null ? { timings: init.timings } : {}),
      ...(init.refreshSelf != null ? { refreshSelf: init.refreshSelf } : {})
    })
    this.unsubscribeMembers = doc.onMembershipChange((added, removed) => {
      for (const peer of added) if (peer !== this.peerId) log.info({ peer }, 'peer record added')
      for (const peer of removed) log.info({ peer }, 'peer record removed')
      // (our own entry deleted or replaced by anyone: the document writes it again itself)
    })
  }

  get peerId (): string {
    return this.transport.peerId
  }

  async start (): Promise<void> {
    await this.transport.start()
    this.started = true
    this.transport.on('peer:ready', () => { this.stats.identified++ })
    await this.docSync.start()
    await this.heartbeats.start()
    this.dialer.start()
    this.pruner.start()
    this.log.info({ peerId: this.peerId, addrs: this.addrs() }, 'mesh started')
  }

  /** Multiaddrs (with /p2p/<id>) other agents can dial. */
  addrs (): string[] {
    return this.transport.addrs()
  }

  /** Open connections per peer (more than one means both sides dialled at once). */
  connectionCount (): number {
    return this.transport.connections().length
  }

  connectedPeers (): string[] {
    return this.transport.connectedPeers()
  }

  /** Serves a protocol on inbound streams. Errors in the handler abort that stream only. */
  async handle (protocol: typeof INFER_PROTOCOL, handler: StreamHandler): Promise<void> {
    await this.inferChannel.handle(protocol, handler)
  }

  /**
   * Sends an inference request to a peer over `/llmesh/infer/1` and returns its answer (see
   * requestInfer), on an idle stream to that peer when one is left from an earlier request.
   */
  async infer (peerId: string, request: InferRequest, signal?: Signal, timeouts?: InferTimeouts): Promise<InferResponse> {
    return await this.inferChannel.request(peerId, request, signal, timeouts)
  }

  /** Opens a stream of `protocol` to a peer, dialling it if needed. */
  async open (peerId: string, protocol: typeof INFER_PROTOCOL, signal?: AbortSignal): Promise<Stream> {
    return await this.transport.openStream(peerId, protocol, signal)
  }

  /** State-vector sync with one peer (see DocSync.sync). */
  async sync (peer: string): Promise<void> {
    await this.docSync.sync(peer)
  }

  /** The heartbeat period now (see Heartbeats.intervalMs). */
  heartbeatIntervalMs (): number {
    return this.started ? this.heartbeats.intervalMs() : this.baseIntervalMs
  }

  /** Sends a heartbeat soon rather than at the next tick; `urgent` sooner still (see Heartbeats.nudge). */
  nudge (urgent = false): void {
    if (this.stopped) return
    this.heartbeats.nudge(urgent)
  }

  /** Members as heard from their heartbeats. */
  members (): Member[] {
    return this.membership.list()
  }

  /**
   * Graceful leave: tells the mesh we are going ('left'), so peers stop routing here at once
   * instead of waiting for the silence timeout.
   */
  async leave (): Promise<void> {
    if (!this.started || this.stopped) return
    let timer: ReturnType<Clock['setTimeout']> | undefined
    await Promise.race([this.heartbeats.send('left'), new Promise((resolve) => { timer = this.clock.setTimeout(() => { resolve(undefined) }, LEAVE_TIMEOUT_MS) })])
    this.clock.clearTimeout(timer)
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.dialer.stop()
    this.pruner.stop()
    this.heartbeats.stop()
    this.docSync.stop()
    this.unsubscribeMembers?.()
    this.unsubscribeMembers = undefined
    this.inferChannel.close()
    await this.rpc.close()
    if (this.started) await this.transport.stop()
  }
}

function required<T> (value: T | undefined, name: string): T {
  if (value == null) throw new Error(`MeshInit.${name} is required without a transport`)
  return value
}
