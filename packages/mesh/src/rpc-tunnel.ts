import { connect, createServer, isIP, type Server, type Socket } from 'node:net'
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { z } from 'zod'
import { ErrorCodes, LlmeshError, toLlmeshError, type ErrorCode, type Logger } from '@llmesh/protocol'
import {
  MAX_RPC_TUNNEL_HEADER_BYTES, MAX_RPC_TUNNEL_STREAMS_PER_PEER, RPC_TUNNEL_CONNECT_TIMEOUT_MS, RPC_TUNNEL_HEADER_TIMEOUT_MS,
  RPC_TUNNEL_OPEN_TIMEOUT_MS, RPC_TUNNEL_PROTOCOL, RPC_TUNNEL_REPLY_TIMEOUT_MS, RPC_TUNNEL_RESOLVE_TIMEOUT_MS
} from './constants.js'
import type { Transport } from './transport.js'
import { lengthPrefixed, varintPrefix } from './wire.js'

/** Longest error message a member puts in its reply, characters. */
const MAX_REPLY_MESSAGE_CHARS = 1024

/** What a coordinator asks for when it opens a tunnel stream: the member's rpc-server of this model. */
export const RpcTunnelHeaderSchema = z.object({ model: z.string().min(1).max(256) })
export type RpcTunnelHeader = z.infer<typeof RpcTunnelHeaderSchema>

/** The member's answer to the header: the bytes that follow are the rpc-server's, or the stream is refused. */
export const RpcTunnelReplySchema = z.union([
  z.object({ ok: z.literal(true) }),
  z.object({
    ok: z.literal(false),
    code: z.string().max(64).transform((c): ErrorCode => (Object.hasOwn(ErrorCodes, c) ? c as ErrorCode : 'INTERNAL')),
    message: z.string().max(MAX_REPLY_MESSAGE_CHARS)
  })
])
export type RpcTunnelReply = z.infer<typeof RpcTunnelReplySchema>

/**
 * Why a member refused or cut a tunnel stream. ONLY APPEND TO THIS LIST: the reasons are
 * counters (RpcTunnels.refused).
 */
export const RpcTunnelRefusals = ['streams-per-peer', 'malformed-header', 'header-timeout', 'not-allowed', 'target-unreachable', 'closed'] as const
export type RpcTunnelRefusal = typeof RpcTunnelRefusals[number]

/** Where a member's rpc-server listens: a loopback address, never another host. */
export interface RpcTarget {
  host: string
  port: number
}

/**
 * The member agent's decision on one tunnel stream: the rpc-server `peer` may reach for
 * `model` (started if needed), or an LlmeshError thrown to refuse (its code and message go back
 * to the coordinator). The agent allows only the coordinator whose signed placement names this
 * host.
 */
export type RpcResolve = (peer: string, model: string) => Promise<RpcTarget>

/** A coordinator's local end of the tunnel to one member's rpc-server. */
export interface Tunnel {
  /** the member */
  readonly peer: string
  readonly model: string
  /** the TCP port on 127.0.0.1 llama-server's `--rpc` names */
  readonly port: number
  /** bytes from local sockets into the mesh (to the rpc-server: tensors, graphs) */
  readonly bytesSent: number
  /** bytes from the mesh to local sockets (the rpc-server's answers) */
  readonly bytesReceived: number
  /** sockets accepted so far, each carried by a stream of its own */
  readonly connections: number
  /** sockets open now */
  readonly active: number
  /** why the last socket was cut (a refusal by the member, an unreachable peer), if one was */
  readonly lastError: LlmeshError | undefined
  /** stops listening and cuts every socket of this tunnel */
  close: () => Promise<void>
}

export interface RpcTunnelsInit {
  /** @default MAX_RPC_TUNNEL_STREAMS_PER_PEER */
  maxStreamsPerPeer?: number
  /** @default RPC_TUNNEL_HEADER_TIMEOUT_MS */
  headerTimeoutMs?: number
  /** @default RPC_TUNNEL_RESOLVE_TIMEOUT_MS */
  resolveTimeoutMs?: number
  /** @default RPC_TUNNEL_CONNECT_TIMEOUT_MS */
  connectTimeoutMs?: number
  /** @default RPC_TUNNEL_OPEN_TIMEOUT_MS */
  openTimeoutMs?: number
  /** @default RPC_TUNNEL_REPLY_TIMEOUT_MS */
  replyTimeoutMs?: number
}

/**
 * llama.cpp RPC over the mesh (`/llmesh/rpc/1`). `rpc-server` has no authentication, so it
 * listens on its host's loopback only; a coordinator's llama-server reaches it through a TCP
 * port on 127.0.0.1 of the coordinator's agent (listen), each accepted socket carried by a
 * libp2p stream of its own (encrypted, cluster members only) to the member's agent (serve),
 * which connects to its loopback rpc-server once the agent allows it.
 *
 * On the stream: the coordinator's header (`{ model }`, length-prefixed JSON, at most
 * MAX_RPC_TUNNEL_HEADER_BYTES), the member's reply (`{ ok: true }` or `{ ok: false, code,
 * message }`, then the stream is reset), then raw bytes both ways. A TCP FIN travels as the
 * stream's close of its write side and back; a reset or a socket error cuts both. Backpressure
 * both ways: a socket whose stream needs draining is paused until the stream drains, a stream
 * whose socket's buffer is full is paused (yamux then stops granting window) until the socket
 * drains, so neither side buffers more than a window and a socket's buffer.
 */
export class RpcTunnels {
  readonly refused: Record<RpcTunnelRefusal, number> = Object.fromEntries(RpcTunnelRefusals.map((r) => [r, 0])) as Record<RpcTunnelRefusal, number>
  private readonly maxStreamsPerPeer: number
  private readonly headerTimeoutMs: number
  private readonly resolveTimeoutMs: number
  private readonly connectTimeoutMs: number
  private readonly openTimeoutMs: number
  private readonly replyTimeoutMs: number
  private readonly log: Logger
  /** every socket/stream pair, per peer, both directions */
  private readonly links = new Map<string, Set<Link>>()
  /** inbound streams open now, per peer */
  private readonly inbound = new Map<string, number>()
  private readonly tunnels = new Set<TunnelServer>()
  private resolve?: RpcResolve
  private handling = false
  private closed = false

  constructor (private readonly transport: Transport, log: Logger, init: RpcTunnelsInit = {}) {
    this.log = log.child({ component: 'rpc-tunnel' })
    this.maxStreamsPerPeer = init.maxStreamsPerPeer ?? MAX_RPC_TUNNEL_STREAMS_PER_PEER
    this.headerTimeoutMs = init.headerTimeoutMs ?? RPC_TUNNEL_HEADER_TIMEOUT_MS
    this.resolveTimeoutMs = init.resolveTimeoutMs ?? RPC_TUNNEL_RESOLVE_TIMEOUT_MS
    this.connectTimeoutMs = init.connectTimeoutMs ?? RPC_TUNNEL_CONNECT_TIMEOUT_MS
    this.openTimeoutMs = init.openTimeoutMs ?? RPC_TUNNEL_OPEN_TIMEOUT_MS
    this.replyTimeoutMs = init.replyTimeoutMs ?? RPC_TUNNEL_REPLY_TIMEOUT_MS
  }

  /**
   * Member side: serves tunnel streams, each to the rpc-server `resolve` names. Once the transport
   * has started; a second call replaces `resolve`.
   */
  async serve (resolve: RpcResolve): Promise<void> {
    if (this.closed) throw new LlmeshError('INTERNAL', 'the rpc tunnels are closed')
    this.resolve = resolve
    if (this.handling) return
    // libp2p's own per-connection bound sits above ours, so a peer over ours hears BUSY rather
    // than a bare reset; it also bounds the streams waiting to hear it
    this.handling = true
    try {
      await this.transport.handleStream(RPC_TUNNEL_PROTOCOL, (stream, peer) => {
        this.accept(stream, peer).catch((err: unknown) => {
          this.log.warn({ err, peer }, 'rpc tunnel stream failed')
          stream.abort(err instanceof Error ? err : new Error(String(err)))
        })
      }, { maxStreams: this.maxStreamsPerPeer * 2 })
    } catch (err) {
      this.handling = false
      throw err
    }
  }

  /**
   * Coordinator side: a TCP port on 127.0.0.1 (chosen by the system) whose every socket is
   * carried to `peer`'s rpc-server of `model`. A socket whose stream cannot be opened, or that
   * the member refuses, is destroyed (llama-server then fails at once, not after a timeout).
   */
  async listen (peer: string, model: string): Promise<Tunnel> {
    if (this.closed) throw new LlmeshError('INTERNAL', 'the rpc tunnels are closed')
    if (!RpcTunnelHeaderSchema.safeParse({ model }).success) throw new LlmeshError('INVALID_REQUEST', 'an rpc tunnel needs a model name of 1 to 256 characters')
    // RPC is request/response in small messages: Nagle with delayed ACKs costs ~40 ms a round trip
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
    const address = server.address()
    if (address == null || typeof address === 'string') throw new LlmeshError('INTERNAL', 'the tunnel listener has no TCP address')
    const tunnel = new TunnelServer(peer, model, address.port, server, () => { this.tunnels.delete(tunnel) })
    this.tunnels.add(tunnel)
    server.on('connection', (socket) => { void this.carry(tunnel, socket) })
    server.on('error', (err) => { this.log.warn({ err, peer, model }, 'rpc tunnel listener failed') })
    this.log.debug({ peer, model, port: tunnel.port }, 'rpc tunnel listening')
    return tunnel
  }

  /**
   * Cuts every tunnel socket and stream to and from `peer` at once (the peer was found dead: a
   * socket left to a half-dead link would hang llama-server). Listeners stay: a new socket
   * opens a new stream.
   */
  closePeer (peer: string): void {
    const links = this.links.get(peer)
    if (links == null) return
    const err = new LlmeshError('PEER_UNREACHABLE', 'the peer of this rpc tunnel is gone')
    for (const link of [...links]) link.destroy(err)
    this.log.info({ peer, cut: links.size }, 'rpc tunnels to a gone peer cut')
  }

  /** Tunnel streams open now from `peer` (inbound, member side), or from every peer. */
  inboundCount (peer?: string): number {
    if (peer != null) return this.inbound.get(peer) ?? 0
    let n = 0
    for (const count of this.inbound.values()) n += count
    return n
  }

  /** Stops every listener and cuts every socket and stream; later streams are refused. */
  async close (): Promise<void> {
    this.closed = true
    const err = new LlmeshError('PEER_UNREACHABLE', 'the agent is stopping')
    for (const links of this.links.values()) for (const link of [...links]) link.destroy(err)
    await Promise.all([...this.tunnels].map(async (t) => { await t.close() }))
  }

  private track (peer: string, inbound: boolean): Link {
    let links = this.links.get(peer)
    if (links == null) {
      links = new Set()
      this.links.set(peer, links)
    }
    const set = links
    if (inbound) this.inbound.set(peer, (this.inbound.get(peer) ?? 0) + 1)
    const link = new Link(() => {
      set.delete(link)
      if (set.size === 0 && this.links.get(peer) === set) this.links.delete(peer)
      if (inbound) {
        const n = (this.inbound.get(peer) ?? 1) - 1
        if (n > 0) this.inbound.set(peer, n)
        else this.inbound.delete(peer)
      }
    })
    set.add(link)
    return link
  }

  /** Member side of one stream: header, the agent's decision, the TCP connect, then the pipe. */
  private async accept (stream: Stream, peer: string): Promise<void> {
    if (this.closed || this.inboundCount(peer) >= this.maxStreamsPerPeer) {
      // refused once its header is in: an answer sent at once can reach the coordinator while it
      // still negotiates the protocol, which then fails without the reason. Streams waiting so
      // are bounded by libp2p's per-connection limit and the header timeout.
      await readHeader(stream, this.headerTimeoutMs).catch(() => {})
      if (this.closed) this.refuse(stream, peer, 'closed', new LlmeshError('NO_CAPACITY', 'the agent is stopping'))
      else this.refuse(stream, peer, 'streams-per-peer', new LlmeshError('BUSY', `more than ${this.maxStreamsPerPeer} rpc tunnel streams from this peer`))
      return
    }
    const link = this.track(peer, true)
    link.attachStream(stream)
    let header: RpcTunnelHeader | undefined
    let rest: Uint8Array | undefined
    try {
      const read = await readHeader(stream, this.headerTimeoutMs)
      rest = read.rest
      header = parseJson(RpcTunnelHeaderSchema, read.body)
    } catch (err) {
      if (link.released) return
      const e = toLlmeshError(err, 'INVALID_REQUEST')
      this.refuse(stream, peer, e.code === 'STALLED' ? 'header-timeout' : 'malformed-header', e)
      return
    }
    if (header == null) {
      this.refuse(stream, peer, 'malformed-header', new LlmeshError('INVALID_REQUEST', 'malformed rpc tunnel header'))
      return
    }
    const resolve = this.resolve
    let target: RpcTarget
    try {
      if (resolve == null) throw new LlmeshError('NOT_SUPPORTED', 'this agent serves no rpc tunnels')
      target = await within(resolve(peer, header.model), this.resolveTimeoutMs, `no rpc-server for ${header.model} within ${this.resolveTimeoutMs} ms`)
      // the tunnel reaches this host's own rpc-server and nothing else, whatever the agent answers
      if (!isLoopback(target.host)) throw new LlmeshError('INTERNAL', `rpc tunnel target ${target.host} is not a loopback address`)
    } catch (err) {
      if (link.released) return
      this.refuse(stream, peer, 'not-allowed', toLlmeshError(err))
      return
    }
    if (link.released) return
    let socket: Socket
    try {
      socket = await connectTcp(target, this.connectTimeoutMs)
    } catch (err) {
      if (link.released) return
      this.refuse(stream, peer, 'target-unreachable', new LlmeshError('RUNNER_FAILED', `cannot reach the rpc-server of ${header.model}: ${(err as Error).message}`, { cause: err }))
      return
    }
    if (link.released) {
      socket.destroy()
      return
    }
    link.attachSocket(socket)
    stream.send(encodeHeader({ ok: true }))
    this.log.debug({ peer, model: header.model, port: target.port }, 'rpc tunnel stream served')
    pipe(stream, socket, rest, { toStream: () => {}, fromStream: () => {} })
  }

  /** The reply says why, then the stream is reset: the reply leaves ahead of the reset (yamux keeps their order). */
  private refuse (stream: Stream, peer: string, reason: RpcTunnelRefusal, err: LlmeshError): void {
    this.refused[reason]++
    this.log.debug({ peer, reason, code: err.code, msg: err.message }, 'rpc tunnel stream refused')
    try {
      if (stream.writeStatus === 'writable') stream.send(encodeHeader({ ok: false, code: err.code, message: err.message.slice(0, MAX_REPLY_MESSAGE_CHARS) }))
    } catch {
      // the stream went meanwhile: the reset below is all there is to do
    }
    stream.abort(err)
  }

  /** Coordinator side of one accepted socket: its own stream, the header, the member's reply, then the pipe. */
  private async carry (tunnel: TunnelServer, socket: Socket): Promise<void> {
    const link = this.track(tunnel.peer, false)
    tunnel.accepted(link)
    link.attachSocket(socket)
    socket.on('error', () => {})
    const fail = (err: unknown): void => {
      // a link already released was ended here (its socket closed, closePeer, close): no news
      if (!link.released) {
        const e = toLlmeshError(err, 'PEER_UNREACHABLE')
        tunnel.lastError = e
        this.log.warn({ peer: tunnel.peer, model: tunnel.model, code: e.code, msg: e.message }, 'rpc tunnel socket cut')
        link.destroy(e)
      }
    }
    if (this.closed || tunnel.closed) {
      fail(new LlmeshError('PEER_UNREACHABLE', 'the rpc tunnel is closed'))
      return
    }
    let stream: Stream
    try {
      stream = await this.transport.openStream(tunnel.peer, RPC_TUNNEL_PROTOCOL, AbortSignal.any([link.signal, AbortSignal.timeout(this.openTimeoutMs)]))
    } catch (err) {
      fail(link.signal.aborted ? link.signal.reason : new LlmeshError('PEER_UNREACHABLE', `cannot open an rpc tunnel stream: ${(err as Error).message}`, { cause: err }))
      return
    }
    if (link.released) {
      stream.abort(new LlmeshError('PEER_UNREACHABLE', 'the rpc tunnel socket closed'))
      return
    }
    link.attachStream(stream)
    let rest: Uint8Array | undefined
    try {
      // the reader first: a member that refuses at once (BUSY) may have answered and reset the
      // stream before it was handed to us, its reply waiting in the stream's buffer
      const reading = readHeader(stream, this.replyTimeoutMs)
      if (stream.writeStatus === 'writable') stream.send(encodeHeader({ model: tunnel.model } satisfies RpcTunnelHeader))
      const read = await reading
      rest = read.rest
      const reply = parseJson(RpcTunnelReplySchema, read.body)
      if (reply == null) throw new LlmeshError('PROTOCOL_ERROR', 'the member sent a malformed rpc tunnel reply')
      if (!reply.ok) throw new LlmeshError(reply.code, `the member refused the rpc tunnel: ${reply.message}`)
    } catch (err) {
      fail(err)
      return
    }
    if (link.released) return
    pipe(stream, socket, rest, { toStream: (n) => { tunnel.bytesSent += n }, fromStream: (n) => { tunnel.bytesReceived += n } })
  }
}

/** The coordinator's listener of one tunnel, with its counters. */
class TunnelServer implements Tunnel {
  bytesSent = 0
  bytesReceived = 0
  connections = 0
  lastError: LlmeshError | undefined
  closed = false
  private readonly links = new Set<Link>()

  constructor (
    readonly peer: string,
    readonly model: string,
    readonly port: number,
    private readonly server: Server,
    private readonly onClose: () => void
  ) {}

  get active (): number {
    return this.links.size
  }

  accepted (link: Link): void {
    this.connections++
    this.links.add(link)
    link.onRelease(() => { this.links.delete(link) })
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.onClose()
    const err = new LlmeshError('PEER_UNREACHABLE', 'the rpc tunnel is closed')
    const closing = new Promise<void>((resolve) => { this.server.close(() => { resolve() }) })
    for (const link of [...this.links]) link.destroy(err)
    await closing
  }
}

/**
 * One socket and the stream that carries it. Released once both are closed (or destroyed), and
 * then forgotten by its owners.
 */
class Link {
  released = false
  private socket?: Socket
  private stream?: Stream
  private readonly ctrl = new AbortController()
  private readonly releases: Array<() => void> = []

  constructor (release: () => void) {
    this.releases.push(release)
  }

  /** aborted when the link is destroyed: a stream being opened for it gives up */
  get signal (): AbortSignal {
    return this.ctrl.signal
  }

  onRelease (fn: () => void): void {
    this.releases.push(fn)
  }

  attachSocket (socket: Socket): void {
    this.socket = socket
    socket.once('close', () => { this.settle() })
  }

  attachStream (stream: Stream): void {
    this.stream = stream
    stream.addEventListener('close', () => { this.settle() }, { once: true })
  }

  destroy (err: Error): void {
    if (!this.ctrl.signal.aborted) this.ctrl.abort(err)
    this.stream?.abort(err)
    this.socket?.destroy()
    this.release()
  }

  private settle (): void {
    const { socket, stream } = this
    const socketDone = socket == null || socket.destroyed
    const streamDone = stream == null || (stream.status !== 'open' && stream.status !== 'closing')
    if (socketDone && socket != null && !streamDone) {
      if (stream == null) {
        // closed before its stream was opened: the opening is given up
        this.ctrl.abort(new LlmeshError('PEER_UNREACHABLE', 'the rpc tunnel socket closed'))
      } else if (stream.remoteWriteStatus !== 'closed') {
        // the other side may still send, and nothing would take its bytes
        stream.abort(new LlmeshError('PEER_UNREACHABLE', 'the rpc tunnel socket closed'))
        return
      } else if (stream.writeStatus === 'writable') {
        // both ways finished on the socket: what it sent still goes out, then the stream ends
        stream.close().catch((err: unknown) => { stream.abort(err instanceof Error ? err : new Error(String(err))) })
      }
    }
    if (socketDone && streamDone) this.release()
    // a stream reset or aborted before its socket closed: the socket goes too
    else if (streamDone && stream != null && socket != null && stream.status !== 'closed') socket.destroy()
  }

  private release (): void {
    if (this.released) return
    this.released = true
    for (const fn of this.releases) fn()
  }
}

/**
 * Bytes both ways between a stream and a socket, from the first byte after the headers (`rest`:
 * what came with the header). FIN travels as FIN (a socket's end closes the stream's write side,
 * the stream's end ends the socket), a reset or an error cuts both; each side that cannot take
 * more pauses the other.
 */
function pipe (stream: Stream, socket: Socket, rest: Uint8Array | undefined, count: { toStream: (n: number) => void, fromStream: (n: number) => void }): void {
  const cut = (why: string): void => { stream.abort(new LlmeshError('PEER_UNREACHABLE', why)) }
  /** the socket was paused because the stream needs draining */
  let waitingForDrain = false

  // stream -> socket
  const deliver = (data: Uint8Array | Uint8ArrayList): void => {
    if (!socket.writable) {
      cut('the rpc tunnel socket closed')
      return
    }
    // one write per message: its parts as separate writes would each go out alone
    const more = socket.write(data instanceof Uint8Array ? data : data.subarray())
    count.fromStream(data.byteLength)
    if (!more && stream.readStatus === 'readable') stream.pause()
  }
  socket.on('drain', () => {
    if (stream.readStatus === 'paused') stream.resume()
  })
  stream.addEventListener('end', () => { if (!socket.destroyed) socket.end() })
  stream.addEventListener('close', (evt: StreamCloseEvent) => {
    if (evt.error != null) socket.destroy()
    else if (!socket.destroyed) socket.end()
  })

  // socket -> stream
  socket.on('data', (chunk: Buffer) => {
    if (stream.writeStatus !== 'writable') {
      socket.destroy()
      return
    }
    count.toStream(chunk.byteLength)
    if (!stream.send(chunk)) {
      waitingForDrain = true
      socket.pause()
    }
  })
  stream.addEventListener('drain', () => {
    if (!waitingForDrain) return
    waitingForDrain = false
    socket.resume()
  })
  socket.on('end', () => {
    stream.close().catch((err: unknown) => { stream.abort(err instanceof Error ? err : new Error(String(err))) })
  })
  socket.on('error', (err) => { stream.abort(err) })
  // (the socket's close: see Link.settle)

  if (rest != null && rest.byteLength > 0) deliver(rest)
  stream.addEventListener('message', (evt: StreamMessageEvent) => { deliver(evt.data) })
  if (stream.readStatus === 'paused' && !socket.writableNeedDrain) stream.resume()
  if (stream.readableEnded && !socket.destroyed) socket.end()
  socket.resume()
}

/**
 * Reads one length-prefixed header off a stream's first bytes; the stream is paused once it is
 * whole (what follows waits in the stream, bounded by the window it granted), and the bytes that
 * came with it are returned as `rest`. Rejects on a header longer than
 * MAX_RPC_TUNNEL_HEADER_BYTES (before reading it), on the stream's end, or after `timeoutMs`.
 */
async function readHeader (stream: Stream, timeoutMs: number): Promise<{ body: Uint8Array, rest: Uint8Array | undefined }> {
  return await new Promise((resolve, reject) => {
    const buf = new Uint8ArrayList()
    const stop = (): void => {
      clearTimeout(timer)
      stream.removeEventListener('message', onMessage)
      stream.removeEventListener('end', onEnd)
      stream.removeEventListener('close', onEnd)
    }
    const onMessage = (evt: StreamMessageEvent): void => {
      buf.append(evt.data)
      const prefix = varintPrefix(buf)
      if (prefix == null) return
      if (prefix.length > MAX_RPC_TUNNEL_HEADER_BYTES) {
        stop()
        reject(new LlmeshError('INVALID_REQUEST', `rpc tunnel header over ${MAX_RPC_TUNNEL_HEADER_BYTES} bytes`))
        return
      }
      if (buf.byteLength < prefix.size + prefix.length) return
      stop()
      if (stream.readStatus === 'readable') stream.pause()
      const body = buf.subarray(prefix.size, prefix.size + prefix.length)
      const rest = buf.byteLength > prefix.size + prefix.length ? buf.subarray(prefix.size + prefix.length) : undefined
      resolve({ body, rest })
    }
    const onEnd = (): void => {
      stop()
      reject(new LlmeshError('PEER_UNREACHABLE', 'the rpc tunnel stream ended before its header'))
    }
    const timer = setTimeout(() => {
      stop()
      reject(new LlmeshError('STALLED', `no whole rpc tunnel header within ${timeoutMs} ms`))
    }, timeoutMs)
    timer.unref()
    stream.addEventListener('message', onMessage)
    stream.addEventListener('end', onEnd)
    stream.addEventListener('close', onEnd)
    if (stream.readableEnded) onEnd()
  })
}

function encodeHeader (value: RpcTunnelHeader | RpcTunnelReply): Uint8Array {
  return lengthPrefixed(new TextEncoder().encode(JSON.stringify(value)))
}

function parseJson<T> (schema: z.ZodType<T>, body: Uint8Array): T | undefined {
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body))
  } catch {
    return undefined
  }
  const parsed = schema.safeParse(json)
  return parsed.success ? parsed.data : undefined
}

function isLoopback (host: string): boolean {
  if (host === 'localhost' || host === '::1') return true
  return isIP(host) === 4 && host.startsWith('127.')
}

async function connectTcp (target: RpcTarget, timeoutMs: number): Promise<Socket> {
  return await new Promise((resolve, reject) => {
    const socket = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true })
    socket.pause()
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no connection within ${timeoutMs} ms`))
    }, timeoutMs)
    timer.unref()
    socket.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.once('connect', () => {
      clearTimeout(timer)
      resolve(socket)
    })
  })
}

/** `promise`, or a STALLED error after `ms` (the work itself goes on: the caller cannot stop it). */
async function within<T> (promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new LlmeshError('STALLED', message)) }, ms)
      timer.unref()
    })])
  } finally {
    clearTimeout(timer)
  }
}
