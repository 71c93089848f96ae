import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, type Identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { ping, type Ping } from '@libp2p/ping'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { preSharedKey } from '@libp2p/pnet'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Connection, PeerDiscovery, PeerInfo, PrivateKey, Stream } from '@libp2p/interface'
import { MAX_PENDING_INBOUND, MDNS_INTERVAL_MS, PING_INTERVAL_MS } from './constants.js'
import { connectionSecret, mdnsServiceTag, swarmKey } from './cluster-key.js'
import { MAX_STREAM_WINDOW_BYTES, framed } from './wire.js'
import { noiseOneWritePerMessage, yamuxWindowUpdates, type PatchLog } from './patches.js'
import type { Channel, ConnectionInfo, DialTarget, Transport, TransportEvents } from './transport.js'

/**
 * Multicast DNS discovery on the LAN, under a service name hashed from the connection secret.
 * Never enable it where multicast must not leave the machine (tests on loopback).
 */
export interface MdnsInit {
  enabled: boolean
  /** query period. @default MDNS_INTERVAL_MS */
  intervalMs?: number
}

export interface Libp2pTransportInit {
  clusterId: string
  /** the cluster key (lab mode); without one the connection secret is derived from clusterId */
  clusterKey?: Uint8Array
  privateKey: PrivateKey
  listen: string[]
  /** multicast DNS discovery. @default off */
  mdns?: MdnsInit
  /** where the library patches report a version they do not know */
  log?: PatchLog
}

type Services = { identify: Identify, ping: Ping, pubsub: GossipSub }

/** The Transport over libp2p: everything libp2p-specific the mesh uses lives here. */
export class Libp2pTransport implements Transport {
  private node?: Libp2p<Services>
  private readonly listeners: { [K in keyof TransportEvents]: Array<TransportEvents[K]> } = { 'peer:ready': [], 'peer:discovery': [] }

  constructor (private readonly init: Libp2pTransportInit) {}

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
      connectionEncrypters: [noiseOneWritePerMessage(this.init.log)],
      streamMuxers: [yamuxWindowUpdates(yamux({ streamOptions: { maxStreamWindowSize: MAX_STREAM_WINDOW_BYTES } }), this.init.log)],
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
    node.addEventListener('peer:identify', (evt) => {
      const peer = evt.detail.peerId.toString()
      for (const fn of this.listeners['peer:ready']) fn(peer)
    })
    // libp2p does not redial a known peer after a partition: every discovery answer is a chance to
    const discovered = (evt: CustomEvent<PeerInfo>): void => {
      const { id, multiaddrs } = evt.detail
      const peer = id.toString()
      const addrs = multiaddrs.map((ma) => ma.toString())
      for (const fn of this.listeners['peer:discovery']) fn(peer, addrs)
    }
    node.addEventListener('peer:discovery', discovered)
    const discovery = (node.services as Partial<Record<'mdns', PeerDiscovery>>).mdns
    discovery?.addEventListener('peer', discovered)
  }

  async stop (): Promise<void> {
    await this.node?.stop()
  }

  addrs (): string[] {
    return this.libp2p.getMultiaddrs().map((ma) => ma.toString())
  }

  connections (): ConnectionInfo[] {
    return this.libp2p.getConnections().map(info)
  }

  connectionsTo (peer: string): ConnectionInfo[] {
    return this.libp2p.getConnections(peerIdFromString(peer)).map(info)
  }

  connectedPeers (): string[] {
    // not libp2p.getPeers(): it rebuilds every PeerId from its string (a base58 decode and a
    // key parse each), a tenth of the agent's CPU per routed request when it ran per request;
    // a connection's remotePeer caches its string
    const peers = new Set<string>()
    for (const c of this.libp2p.getConnections()) peers.add(c.remotePeer.toString())
    return [...peers]
  }

  async dial (target: DialTarget, options: { signal?: AbortSignal, force?: boolean } = {}): Promise<ConnectionInfo> {
    const to = 'peer' in target ? peerIdFromString(target.peer) : target.addrs.map((a) => multiaddr(a))
    return info(await this.libp2p.dial(to, options))
  }

  async hangUp (connectionId: string): Promise<void> {
    await this.libp2p.getConnections().find((c) => c.id === connectionId)?.close()
  }

  check (peer: string | undefined, addrs: string[]): void {
    if (peer != null) peerIdFromString(peer)
    for (const a of addrs) multiaddr(a)
  }

  peerOfAddr (addr: string): string | undefined {
    return multiaddr(addr).getComponents().find((c) => c.name === 'p2p')?.value
  }

  async open (peer: string, protocol: string, options: { maxDataLength: number, signal?: AbortSignal }): Promise<Channel> {
    const stream = await this.libp2p.dialProtocol(peerIdFromString(peer), protocol, options.signal != null ? { signal: options.signal } : {})
    return channelOf(stream, options.maxDataLength)
  }

  async handle (protocol: string, handler: (channel: Channel, peer: string) => void, options: { maxDataLength: number }): Promise<void> {
    await this.libp2p.handle(protocol, (stream, connection) => {
      handler(channelOf(stream, options.maxDataLength), connection.remotePeer.toString())
    })
  }

  async openStream (peer: string, protocol: string, signal?: AbortSignal): Promise<Stream> {
    // (multistream-select declares `negotiateFully: false` but does not implement it in this
    // libp2p: every new stream costs a negotiation round trip, which is why InferStreams keeps
    // streams for later requests)
    const opts = signal != null ? { signal } : {}
    // an open connection takes the stream directly: libp2p's dialProtocol goes through the dial
    // queue and the peer store first, about 1 ms per request measured on loopback
    const id = peerIdFromString(peer)
    const conn = this.libp2p.getConnections(id).find((c) => c.status === 'open')
    if (conn != null) return await conn.newStream(protocol, opts)
    return await this.libp2p.dialProtocol(id, protocol, opts)
  }

  async handleStream (protocol: string, handler: (stream: Stream, peer: string) => void, options: { maxStreams?: number } = {}): Promise<void> {
    const limits = options.maxStreams != null ? { maxInboundStreams: options.maxStreams, maxOutboundStreams: options.maxStreams } : {}
    await this.libp2p.handle(protocol, (stream, connection) => { handler(stream, connection.remotePeer.toString()) }, limits)
  }

  async publish (topic: string, data: Uint8Array): Promise<void> {
    await this.libp2p.services.pubsub.publish(topic, data)
  }

  subscribe (topic: string, handler: (from: string, data: Uint8Array) => void): void {
    const pubsub = this.libp2p.services.pubsub
    pubsub.subscribe(topic)
    pubsub.addEventListener('message', (evt) => {
      const msg = evt.detail
      if (msg.type !== 'signed' || msg.topic !== topic) return
      handler(msg.from.toString(), msg.data)
    })
  }

  on<K extends keyof TransportEvents> (event: K, listener: TransportEvents[K]): void {
    this.listeners[event].push(listener)
  }
}

function info (c: Connection): ConnectionInfo {
  return { id: c.id, peer: c.remotePeer.toString(), status: c.status === 'open' ? 'open' : c.status === 'closing' ? 'closing' : 'closed' }
}

function channelOf (stream: Stream, maxDataLength: number): Channel {
  const lp = framed(stream, { maxDataLength })
  return {
    read: async (options) => await lp.read(options),
    write: async (data, options) => { await lp.write(data, options) },
    close: async (options) => { await stream.close(options) },
    abort: (err) => { stream.abort(err) }
  }
}
