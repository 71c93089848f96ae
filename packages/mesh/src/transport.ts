import type { Stream } from '@libp2p/interface'

/**
 * The port the mesh's parts talk through: peers, connections, protocol streams and a pubsub
 * topic. Two adapters: libp2p (libp2p-transport.ts: tcp, pnet, noise, yamux, identify, mdns,
 * gossipsub) and an in-memory hub for unit tests (memory-transport.ts). Peers and addresses are
 * strings here; only an adapter parses them.
 */
export interface Transport {
  /** this node's peer id */
  readonly peerId: string
  start: () => Promise<void>
  stop: () => Promise<void>
  /** addresses other nodes can dial (with /p2p/<id> on libp2p) */
  addrs: () => string[]
  /** open (or opening) connections, all peers */
  connections: () => ConnectionInfo[]
  /** connections to one peer */
  connectionsTo: (peer: string) => ConnectionInfo[]
  /** peers we hold a connection to, each once */
  connectedPeers: () => string[]
  /**
   * Connects to a peer, by its id (addresses the transport knows) or by addresses. `force`:
   * a new connection even when one exists (a probe beside a connection that may be a corpse).
   * Rejects when the signal fires first or the peer cannot be reached.
   */
  dial: (target: DialTarget, options?: { signal?: AbortSignal, force?: boolean }) => Promise<ConnectionInfo>
  /** closes one connection */
  hangUp: (connectionId: string) => Promise<void>
  /** checks a peer id and its addresses; throws (with the reason) when the transport cannot dial them */
  check: (peer: string | undefined, addrs: string[]) => void
  /** the peer an address names (/p2p/<id>), if it names one; throws on an address the transport cannot read */
  peerOfAddr: (addr: string) => string | undefined
  /** a stream of length-prefixed messages to a peer, dialling it if needed */
  open: (peer: string, protocol: string, options: ChannelOptions & { signal?: AbortSignal }) => Promise<Channel>
  /** serves a protocol: `handler` gets each inbound stream as a channel of messages */
  handle: (protocol: string, handler: (channel: Channel, peer: string) => void, options: ChannelOptions) => Promise<void>
  /** a raw byte stream (for protocols that frame and pace their own bytes: /llmesh/infer/1) */
  openStream: (peer: string, protocol: string, signal?: AbortSignal) => Promise<Stream>
  /** serves a protocol with raw byte streams */
  handleStream: (protocol: string, handler: (stream: Stream, peer: string) => void, options?: { maxStreams?: number }) => Promise<void>
  /** publishes on a topic to every subscriber but us */
  publish: (topic: string, data: Uint8Array) => Promise<void>
  /** subscribes; `handler` gets what others publish (sender, bytes) */
  subscribe: (topic: string, handler: (from: string, data: Uint8Array) => void) => void
  /** connection events: see TransportEvents */
  on: <K extends keyof TransportEvents>(event: K, listener: TransportEvents[K]) => void
}

export interface TransportEvents {
  /** a connection to `peer` is ready for protocols (libp2p: identify completed) */
  'peer:ready': (peer: string) => void
  /** a peer was found (mDNS, bootstrap); `addrs` may be empty */
  'peer:discovery': (peer: string, addrs: string[]) => void
}

export type DialTarget = { peer: string } | { addrs: string[] }

export interface ConnectionInfo {
  id: string
  peer: string
  status: 'open' | 'closing' | 'closed'
}

export interface ChannelOptions {
  /** largest message accepted, bytes: a longer one fails the read */
  maxDataLength: number
}

/** A stream of whole messages both ways (length-prefixed on the wire). */
export interface Channel {
  /** the next message; throws once the stream ended or when aborted */
  read: (options?: { signal?: AbortSignal }) => Promise<Uint8Array>
  write: (data: Uint8Array, options?: { signal?: AbortSignal }) => Promise<void>
  /** ends our side gracefully */
  close: (options?: { signal?: AbortSignal }) => Promise<void>
  /** ends both sides at once */
  abort: (err: Error) => void
}
