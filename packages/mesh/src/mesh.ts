import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, type Identify } from '@libp2p/identify'
import { ping, type Ping } from '@libp2p/ping'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import type { Connection, PeerId, PrivateKey, Stream } from '@libp2p/interface'
import type { Logger } from 'pino'
import { SYNC_PROTOCOL, INFER_PROTOCOL, stateTopic } from '@llmesh/protocol'
import type { ClusterDoc } from '@llmesh/state'
import { BOOTSTRAP_REDIAL_MS, PING_INTERVAL_MS, SYNC_TIMEOUT_MS, MAX_SYNC_MESSAGE_BYTES } from './constants.js'

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

  constructor (init: MeshInit) {
    this.init = init
    this.log = init.logger.child({ component: 'mesh' })
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
      if (msg.topic !== topic || msg.type !== 'signed') return
      const sender = msg.from.toString()
      const result = this.init.doc.applyRemote(msg.data, sender)
      if (!result.applied) this.log.debug({ peer: sender, reason: result.reason }, 'state delta dropped')
      // a delta we cannot place, or one Yjs parks for a missing predecessor: repair by sync
      if ((!result.applied && result.reason === 'unresolved') || this.init.doc.hasPending()) {
        void this.sync(sender)
      }
    })
    this.unsubscribeDoc = this.init.doc.onLocalUpdate((update) => {
      if (this.stopped) return
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

    this.dialBootstrap()
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

  async stop (): Promise<void> {
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
    this.timers.clear()
    this.unsubscribeDoc?.()
    await this.node?.stop()
  }
}

export type { PeerId }
