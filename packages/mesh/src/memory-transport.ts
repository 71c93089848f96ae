import type { Stream } from '@libp2p/interface'
import type { Channel, ConnectionInfo, DialTarget, Transport, TransportEvents } from './transport.js'

/** A memory address: /memory/<peer id>. */
const ADDR = /^\/memory\/([^/]+)$/

/**
 * An in-process network for unit tests: a hub the in-memory transports of several nodes join,
 * with faults a test sets between two of them. Nothing here reads a clock or sets a timer: every
 * delivery is a microtask, and a dial into a cut link waits for its caller's signal, so a test
 * drives time with a fake clock alone.
 */
export class MemoryHub {
  private readonly nodes = new Map<string, MemoryTransport>()
  private readonly cut = new Map<string, 'silent' | 'refuse'>()
  private nextConnection = 0
  /** every dial attempt, in order: who dialled whom (a test reads the redials from it) */
  readonly dials: Array<{ from: string, to: string }> = []
  /** gossip between two nodes, dropped where this answers false (a lost gossip message) */
  gossipFilter?: (from: string, to: string, data: Uint8Array) => boolean

  /** A transport for `peerId` on this hub (it joins at start). */
  transport (peerId: string): MemoryTransport {
    return new MemoryTransport(this, peerId)
  }

  /** `a` dials `b`. */
  async connect (a: string, b: string): Promise<void> {
    await this.node(a).dial({ peer: b })
  }

  /** Closes every connection between `a` and `b` at once, both sides notice (a clean hang-up). */
  disconnect (a: string, b: string): void {
    for (const c of this.node(a).connectionsBetween(b)) c.close()
  }

  /**
   * Cuts the link between `a` and `b`: what is on its way and what is sent later is lost, dials
   * between them wait until their signal fires, and the connections stay open, silent (TCP does
   * not notice a cut link for minutes). With `refuse`, dials fail at once instead (the host is
   * there and refuses, or answers unreachable). Undone by heal.
   */
  drop (a: string, b: string, how: { refuse?: boolean } = {}): void {
    this.cut.set(linkKey(a, b), how.refuse === true ? 'refuse' : 'silent')
  }

  heal (a: string, b: string): void {
    this.cut.delete(linkKey(a, b))
  }

  isCut (a: string, b: string): boolean {
    return this.cut.has(linkKey(a, b))
  }

  /** @internal dials across this link are refused at once */
  refuses (a: string, b: string): boolean {
    return this.cut.get(linkKey(a, b)) === 'refuse'
  }

  /** @internal */
  join (t: MemoryTransport): void {
    this.nodes.set(t.peerId, t)
  }

  /** @internal */
  leave (t: MemoryTransport): void {
    if (this.nodes.get(t.peerId) === t) this.nodes.delete(t.peerId)
  }

  /** @internal the started node for `peer`, if any */
  find (peer: string): MemoryTransport | undefined {
    return this.nodes.get(peer)
  }

  /** @internal */
  connectionId (): string {
    return `mem-${++this.nextConnection}`
  }

  private node (peer: string): MemoryTransport {
    const n = this.nodes.get(peer)
    if (n == null) throw new Error(`no started node ${peer} on the hub`)
    return n
  }
}

/** Never resolves; rejects when `signal` fires (never without one). */
async function untilAborted (signal: AbortSignal | undefined): Promise<never> {
  return await new Promise<never>((_resolve, reject) => {
    if (signal == null) return
    const fail = (): void => { reject(signal.reason instanceof Error ? signal.reason : new Error('aborted')) }
    if (signal.aborted) fail()
    else signal.addEventListener('abort', fail, { once: true })
  })
}

function linkKey (a: string, b: string): string {
  return a < b ? `${a}\n${b}` : `${b}\n${a}`
}

/** One connection between two memory transports, shared by both ends. */
class MemoryConnection {
  status: ConnectionInfo['status'] = 'open'
  readonly channels = new Set<MemoryChannel>()

  constructor (readonly id: string, readonly a: MemoryTransport, readonly b: MemoryTransport, readonly hub: MemoryHub) {}

  other (self: MemoryTransport): MemoryTransport {
    return self === this.a ? this.b : this.a
  }

  infoFor (self: MemoryTransport): ConnectionInfo {
    return { id: this.id, peer: this.other(self).peerId, status: this.status }
  }

  get silent (): boolean {
    return this.hub.isCut(this.a.peerId, this.b.peerId)
  }

  close (): void {
    if (this.status === 'closed') return
    this.status = 'closed'
    for (const ch of this.channels) ch.end(new Error('connection closed'))
    this.a.forget(this)
    this.b.forget(this)
  }
}

/** One end of an in-memory stream of whole messages. */
class MemoryChannel implements Channel {
  peer?: MemoryChannel
  private readonly queue: Uint8Array[] = []
  private readonly waiting: Array<{ resolve: (m: Uint8Array) => void, reject: (e: Error) => void }> = []
  /** the remote side closed: reads fail once the queue is empty */
  private remoteClosed = false
  private localClosed = false
  private error?: Error

  constructor (private readonly conn: MemoryConnection, private readonly maxDataLength: number) {
    conn.channels.add(this)
  }

  async read (options: { signal?: AbortSignal } = {}): Promise<Uint8Array> {
    const next = this.queue.shift()
    if (next != null) return this.check(next)
    if (this.error != null) throw this.error
    if (this.remoteClosed) throw new Error('stream ended')
    const { signal } = options
    signal?.throwIfAborted()
    return await new Promise<Uint8Array>((resolve, reject) => {
      const waiter = {
        resolve: (m: Uint8Array) => { signal?.removeEventListener('abort', onAbort); resolve(m) },
        reject: (e: Error) => { signal?.removeEventListener('abort', onAbort); reject(e) }
      }
      const onAbort = (): void => {
        const at = this.waiting.indexOf(waiter)
        if (at >= 0) this.waiting.splice(at, 1)
        reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiting.push(waiter)
    }).then((m) => this.check(m))
  }

  async write (data: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<void> {
    options.signal?.throwIfAborted()
    if (this.error != null) throw this.error
    if (this.localClosed) throw new Error('stream closed for writing')
    // a cut link loses what is sent; the sender does not know
    if (this.conn.silent) return
    this.peer?.deliver(data.slice())
  }

  async close (): Promise<void> {
    if (this.localClosed) return
    this.localClosed = true
    if (!this.conn.silent) this.peer?.remoteEnded()
    if (this.remoteClosed) this.conn.channels.delete(this)
  }

  abort (err: Error): void {
    this.end(err)
    this.peer?.end(new Error('stream reset by peer'))
  }

  /** @internal ends this side with an error (its connection closed, or a reset) */
  end (err: Error): void {
    if (this.error != null) return
    this.error = err
    this.conn.channels.delete(this)
    for (const w of this.waiting.splice(0)) w.reject(err)
  }

  private deliver (data: Uint8Array): void {
    if (this.error != null) return
    const w = this.waiting.shift()
    if (w != null) w.resolve(data)
    else this.queue.push(data)
  }

  private remoteEnded (): void {
    this.remoteClosed = true
    for (const w of this.waiting.splice(0)) w.reject(new Error('stream ended'))
  }

  private check (m: Uint8Array): Uint8Array {
    if (m.byteLength > this.maxDataLength) {
      const err = new Error(`message length ${m.byteLength} > ${this.maxDataLength}`)
      this.abort(err)
      throw err
    }
    return m
  }
}

/**
 * The Transport of one node on a MemoryHub. Addresses are /memory/<peer id>; a connection is
 * ready at once (no handshake); streams carry whole messages; pubsub reaches the subscribers
 * this node is connected to. Raw byte streams (openStream) are not offered: the infer protocol
 * is tested over libp2p.
 */
export class MemoryTransport implements Transport {
  private readonly conns = new Set<MemoryConnection>()
  private readonly handlers = new Map<string, { handler: (ch: Channel, peer: string) => void, maxDataLength: number }>()
  private readonly topics = new Map<string, Array<(from: string, data: Uint8Array) => void>>()
  private readonly listeners: { [K in keyof TransportEvents]: Array<TransportEvents[K]> } = { 'peer:ready': [], 'peer:discovery': [] }
  private started = false

  constructor (private readonly hub: MemoryHub, readonly peerId: string) {}

  async start (): Promise<void> {
    this.started = true
    this.hub.join(this)
  }

  async stop (): Promise<void> {
    this.started = false
    this.hub.leave(this)
    for (const c of [...this.conns]) c.close()
  }

  addrs (): string[] {
    return [`/memory/${this.peerId}`]
  }

  connections (): ConnectionInfo[] {
    return [...this.conns].map((c) => c.infoFor(this))
  }

  connectionsTo (peer: string): ConnectionInfo[] {
    return this.connectionsBetween(peer).map((c) => c.infoFor(this))
  }

  connectedPeers (): string[] {
    return [...new Set([...this.conns].map((c) => c.other(this).peerId))]
  }

  async dial (target: DialTarget, options: { signal?: AbortSignal, force?: boolean } = {}): Promise<ConnectionInfo> {
    if (!this.started) throw new Error('not started')
    const peer = 'peer' in target ? target.peer : this.peerOfAddrs(target.addrs)
    this.hub.dials.push({ from: this.peerId, to: peer })
    if (!options.force) {
      const open = this.connectionsBetween(peer).find((c) => c.status === 'open')
      if (open != null) return open.infoFor(this)
    }
    if (this.hub.refuses(this.peerId, peer)) throw new Error(`connection to ${peer} refused`)
    // a SYN into a cut link: nothing answers until the caller gives up
    if (this.hub.isCut(this.peerId, peer)) await untilAborted(options.signal)
    const remote = this.hub.find(peer)
    if (remote == null || remote === this) throw new Error(`peer ${peer} unreachable`)
    const conn = new MemoryConnection(this.hub.connectionId(), this, remote, this.hub)
    this.conns.add(conn)
    remote.accept(conn)
    // both ends are ready for protocols once the connection is up (libp2p: after identify)
    queueMicrotask(() => {
      if (conn.status !== 'open') return
      this.emitReady(remote.peerId)
      remote.emitReady(this.peerId)
    })
    return conn.infoFor(this)
  }

  async hangUp (connectionId: string): Promise<void> {
    for (const c of this.conns) if (c.id === connectionId) c.close()
  }

  check (peer: string | undefined, addrs: string[]): void {
    if (peer != null && (peer.length === 0 || peer.includes('/'))) throw new Error(`bad peer id ${JSON.stringify(peer)}`)
    for (const a of addrs) this.peerOfAddr(a)
  }

  peerOfAddr (addr: string): string | undefined {
    const m = ADDR.exec(addr)
    if (m == null) throw new Error(`not a memory address: ${addr}`)
    return m[1]
  }

  async open (peer: string, protocol: string, options: { maxDataLength: number, signal?: AbortSignal }): Promise<Channel> {
    let conn = this.connectionsBetween(peer).find((c) => c.status === 'open')
    if (conn == null) {
      await this.dial({ peer }, options.signal != null ? { signal: options.signal } : {})
      conn = this.connectionsBetween(peer).find((c) => c.status === 'open')
      if (conn == null) throw new Error('connection closed')
    }
    // protocol negotiation over a cut link: nothing answers until the caller gives up
    if (conn.silent) await untilAborted(options.signal)
    const remote = conn.other(this)
    const served = remote.handlers.get(protocol)
    if (served == null) throw new Error(`protocol ${protocol} not supported by ${peer}`)
    const local = new MemoryChannel(conn, options.maxDataLength)
    const inbound = new MemoryChannel(conn, served.maxDataLength)
    local.peer = inbound
    inbound.peer = local
    queueMicrotask(() => { served.handler(inbound, this.peerId) })
    return local
  }

  async handle (protocol: string, handler: (channel: Channel, peer: string) => void, options: { maxDataLength: number }): Promise<void> {
    this.handlers.set(protocol, { handler, maxDataLength: options.maxDataLength })
  }

  async openStream (): Promise<Stream> {
    throw new Error('raw streams are not offered by the memory transport')
  }

  async handleStream (): Promise<void> {}

  async publish (topic: string, data: Uint8Array): Promise<void> {
    for (const peer of this.connectedPeers()) {
      if (this.hub.isCut(this.peerId, peer)) continue
      if (this.hub.gossipFilter != null && !this.hub.gossipFilter(this.peerId, peer, data)) continue
      const remote = this.hub.find(peer)
      const copy = data.slice()
      queueMicrotask(() => { remote?.receive(topic, this.peerId, copy) })
    }
  }

  subscribe (topic: string, handler: (from: string, data: Uint8Array) => void): void {
    const list = this.topics.get(topic) ?? []
    list.push(handler)
    this.topics.set(topic, list)
  }

  on<K extends keyof TransportEvents> (event: K, listener: TransportEvents[K]): void {
    this.listeners[event].push(listener)
  }

  /** Tells this node a peer was found (as mDNS would). */
  discover (peer: string, addrs: string[] = []): void {
    for (const fn of this.listeners['peer:discovery']) fn(peer, addrs)
  }

  /** @internal */
  connectionsBetween (peer: string): MemoryConnection[] {
    return [...this.conns].filter((c) => c.other(this).peerId === peer)
  }

  /** @internal */
  accept (conn: MemoryConnection): void {
    this.conns.add(conn)
  }

  /** @internal */
  forget (conn: MemoryConnection): void {
    this.conns.delete(conn)
  }

  private emitReady (peer: string): void {
    if (!this.started) return
    for (const fn of this.listeners['peer:ready']) fn(peer)
  }

  private receive (topic: string, from: string, data: Uint8Array): void {
    if (!this.started) return
    for (const fn of this.topics.get(topic) ?? []) fn(from, data)
  }

  private peerOfAddrs (addrs: string[]): string {
    const peer = addrs.map((a) => this.peerOfAddr(a)).find((p) => p != null)
    if (peer == null) throw new Error('no address to dial')
    return peer
  }
}
