import type { Stream } from '@libp2p/interface'
import {
  BusyError, FrameKind, InferErrorSchema, InferHeadSchema, InferRequestSchema, LlmeshError, MAX_INFER_REQUEST_BYTES, QueueFullError,
  decodeFrame, encodeFrame, parseFramePayload, toLlmeshError,
  type InferHead, type InferRequest, type Signal
} from '@llmesh/protocol'
import { Abort, Coalescer, abortSignalOf, drainedWithin, type Sink } from '@llmesh/kit'
import {
  INFER_STREAM_IDLE_MS, KEPT_STREAM_IDLE_READ_MS, MAX_IDLE_INFER_STREAMS, MAX_INFER_REQUESTS_PER_PEER, MAX_INFER_STREAMS_PER_PEER,
  MAX_REQUEST_BYTES_IN_FLIGHT_PER_PEER, MIN_KEEPALIVE_MS, REQUEST_READ_TIMEOUT_MS, WRITE_STALL_MS
} from './constants.js'
import { framed, lengthPrefixed, type FramedStream } from './wire.js'

/** Largest response frame accepted; runners' chunks are far smaller. */
const MAX_RESPONSE_FRAME_BYTES = 4 * 1024 * 1024

export interface InferResponse {
  head: InferHead
  /** response bytes as the runner produced them; throws an LlmeshError if the peer fails midway */
  body: AsyncIterable<Uint8Array>
}

/**
 * How long a requester waits on a peer that does not answer. The peer is asked for KEEPALIVE
 * frames every quarter of the shorter silence bound, so an honest host that queues the request,
 * evaluates a long prompt or generates a non-streaming answer is never taken for a silent one.
 */
export interface InferTimeouts {
  /** longest silence from the request to the peer's first frame (HEAD, ERROR or KEEPALIVE), ms */
  headMs: number
  /** longest silence between two frames once the peer answers, keepalives included, and inside a partial frame, ms */
  gapMs: number
  /** longest wait from the request to the first DATA frame, keepalives notwithstanding, ms */
  firstTokenMs: number
}

/** A requester's stream with its one length-prefixed reader (a second reader would steal bytes). */
interface Channel {
  stream: Stream
  lp: FramedStream
  /** made by the first exchange with timeouts, kept with the stream */
  silence?: Silence
}

function channelOf (stream: Stream): Channel {
  return { stream, lp: framed(stream, { maxDataLength: MAX_RESPONSE_FRAME_BYTES }) }
}

function canWrite (stream: Stream): boolean {
  return stream.status === 'open' && stream.writeStatus === 'writable'
}

/** Open both ways: the stream can carry another request. */
function usable (stream: Stream): boolean {
  return canWrite(stream) && stream.remoteWriteStatus === 'writable' && stream.readStatus === 'readable'
}

/**
 * Requester side of `/llmesh/infer/1` on a stream of its own: sends the request, waits for HEAD
 * (or ERROR, thrown as the peer's LlmeshError), and returns the body as an async iterable of
 * DATA payloads. The stream is closed once the answer is read, and aborted (so the peer stops
 * its runner) when the body is left early or the exchange fails.
 */
export async function requestInfer (stream: Stream, request: InferRequest, signal?: Signal, timeouts?: InferTimeouts): Promise<InferResponse> {
  return await exchange(channelOf(stream), request, signal, (outcome) => { finishChannel(stream, outcome !== 'abort') }, timeouts)
}

/**
 * The requester's silence bound on one stream: one timer per stream, kept across its requests
 * and re-armed (refreshed) at the start of every read; when it fires between reads it is ignored
 * (the consumer is not reading: that is not the peer's silence) and lies dormant until the next
 * read. When it fires during a read, the stream is aborted and `fired` says why.
 */
class Silence {
  fired?: LlmeshError
  private reading = false
  private timer?: NodeJS.Timeout
  private ms = 0
  private phase = ''

  constructor (private readonly stream: Stream) {}

  /** From now on the bound is `ms`, described as `phase`; a new exchange forgets the last one's failure. */
  arm (ms: number, phase: string, fresh = false): this {
    this.phase = phase
    if (fresh) this.fired = undefined
    if (ms !== this.ms || this.timer == null) {
      clearTimeout(this.timer)
      this.ms = ms
      this.timer = setTimeout(() => {
        if (this.reading && this.fired == null) this.fail(`the peer sent nothing for ${this.ms} ms ${this.phase}`)
      }, ms)
      this.timer.unref()
    }
    return this
  }

  fail (message: string): void {
    this.fired = new LlmeshError('STALLED', `${message}; the request was abandoned`)
    this.stream.abort(this.fired)
  }

  async read (lp: FramedStream): Promise<{ kind: number, payload: Uint8Array }> {
    this.reading = true
    this.timer?.refresh()
    try {
      return await readFrame(lp)
    } catch (err) {
      throw this.fired ?? err
    } finally {
      this.reading = false
    }
  }

  /** The stream will carry nothing more. */
  dispose (): void {
    clearTimeout(this.timer)
  }
}

function finishChannel (stream: Stream, cleanEnd: boolean): void {
  if (cleanEnd && stream.status === 'open') stream.close().catch(() => { stream.abort(new Error('close failed')) })
  else if (stream.status === 'open') stream.abort(new Error('requester stopped reading'))
}

/**
 * How an exchange left its stream: `reuse`, the answer was read to its end and the peer reads
 * another request on the stream; `end`, the answer was read to its end; `abort`, it was not
 * (failure, or the consumer left early), so the stream must be aborted.
 */
type Outcome = 'reuse' | 'end' | 'abort'

/**
 * One request and its answer on a channel; `done` is called exactly once. The signal aborts the
 * stream (a pending read or write then fails, and the peer stops its runner): no signal reaches
 * libp2p's reads, which would tie an AbortSignal to every request (see Abort).
 */
async function exchange (ch: Channel, request: InferRequest, signal: Signal | undefined, done: (outcome: Outcome) => void, timeouts?: InferTimeouts): Promise<InferResponse> {
  const { lp } = ch
  if (signal?.aborted === true) {
    done('reuse')
    throw signal.reason
  }
  const silence = timeouts != null ? (ch.silence ??= new Silence(ch.stream)).arm(timeouts.headMs, 'before answering', true) : undefined
  const sentAt = timeouts != null ? performance.now() : 0
  let dataSeen = false
  /** the next frame that is not a KEEPALIVE; a keepalive past the first-token bound fails the exchange */
  const next = async (): Promise<{ kind: number, payload: Uint8Array }> => {
    if (silence == null) return await readFrame(lp)
    for (;;) {
      const frame = await silence.read(lp)
      if (frame.kind !== FrameKind.KEEPALIVE) {
        if (frame.kind === FrameKind.DATA) dataSeen = true
        return frame
      }
      if (!dataSeen && performance.now() - sentAt > timeouts!.firstTokenMs) {
        silence.fail(`the peer sent no token within ${timeouts!.firstTokenMs} ms`)
        throw silence.fired!
      }
    }
  }
  const onAbort = (): void => {
    const reason = signal?.reason
    ch.stream.abort(reason instanceof Error ? reason : new Error('request aborted'))
  }
  signal?.addEventListener('abort', onAbort)
  let settled = false
  const finish = (outcome: Outcome): void => {
    if (settled) return
    settled = true
    if (outcome !== 'reuse') silence?.dispose()
    signal?.removeEventListener('abort', onAbort)
    done(outcome)
  }
  let head: InferHead
  let keepAlive: boolean
  try {
    const keepaliveMs = timeouts != null ? Math.max(MIN_KEEPALIVE_MS, Math.floor(Math.min(timeouts.headMs, timeouts.gapMs) / 4)) : undefined
    await lp.write(encodeFrame(FrameKind.REQUEST, keepaliveMs != null ? { ...request, keepaliveMs } : request))
    const first = await next()
    if (first.kind === FrameKind.ERROR) {
      const e = peerError(first.payload)
      finish(e.keepAlive ? 'reuse' : 'end')
      throw e.error
    }
    if (first.kind !== FrameKind.HEAD) throw new LlmeshError('PROTOCOL_ERROR', `peer answered with frame kind ${first.kind} instead of a head`)
    const parsed = parseFramePayload(InferHeadSchema, first.payload)
    if (parsed == null) throw new LlmeshError('PROTOCOL_ERROR', 'peer sent a malformed response head')
    head = { status: parsed.status, contentType: parsed.contentType, runnerId: parsed.runnerId }
    keepAlive = parsed.keepAlive === true
    silence?.arm(timeouts!.gapMs, 'between frames')
  } catch (err) {
    // aborted or failed before the head: the stream is in an unknown state, and aborting it
    // tells the peer to stop any work it started for this request
    finish('abort')
    throw err
  }

  async function * body (): AsyncGenerator<Uint8Array> {
    let outcome: Outcome = 'abort'
    try {
      while (true) {
        const frame = await next()
        if (frame.kind === FrameKind.DATA) yield frame.payload
        else if (frame.kind === FrameKind.END) {
          outcome = keepAlive ? 'reuse' : 'end'
          return
        } else if (frame.kind === FrameKind.ERROR) {
          const e = peerError(frame.payload)
          outcome = e.keepAlive ? 'reuse' : 'end'
          throw e.error
        } else throw new LlmeshError('PROTOCOL_ERROR', `unexpected frame kind ${frame.kind} in a response body`)
      }
    } finally {
      // an early exit by the consumer (client went away) lands here unclean: the stream is
      // aborted, so the peer stops its runner
      finish(outcome)
    }
  }
  return { head, body: body() }
}

/**
 * The requester's infer streams to every peer: a request takes an idle stream to its target
 * when there is one and opens a stream otherwise; a stream whose answer was read to its end
 * goes back to the idle list (at most MAX_IDLE_INFER_STREAMS per peer, most recently used
 * first, closed after INFER_STREAM_IDLE_MS unused). One request at a time per stream, so each
 * answer keeps yamux's per-stream flow control, and aborting the stream still cancels exactly
 * that request on the peer.
 */
export class InferStreams {
  private readonly idle = new Map<string, Array<{ ch: Channel, timer: NodeJS.Timeout }>>()
  private closed = false

  constructor (
    private readonly open: (peerId: string, signal?: AbortSignal) => Promise<Stream>,
    private readonly maxIdle = MAX_IDLE_INFER_STREAMS,
    private readonly idleMs = INFER_STREAM_IDLE_MS
  ) {}

  /** Sends `request` to `peerId` and returns the answer, as `requestInfer` does. */
  async request (peerId: string, request: InferRequest, signal?: Signal, timeouts?: InferTimeouts): Promise<InferResponse> {
    const ch = this.take(peerId) ?? channelOf(await this.openFor(peerId, signal))
    return await exchange(ch, request, signal, (outcome) => {
      if (outcome === 'reuse' && usable(ch.stream)) this.put(peerId, ch)
      else finishChannel(ch.stream, outcome !== 'abort')
    }, timeouts)
  }

  /** A new stream; libp2p takes only an AbortSignal, made here (a new stream is the rare case). */
  private async openFor (peerId: string, signal: Signal | undefined): Promise<Stream> {
    if (signal == null) return await this.open(peerId)
    const follow = abortSignalOf(signal)
    try {
      return await this.open(peerId, follow.signal)
    } finally {
      follow.release()
    }
  }

  /** Idle streams held now (for tests and status). */
  idleCount (peerId?: string): number {
    if (peerId != null) return this.idle.get(peerId)?.length ?? 0
    let n = 0
    for (const list of this.idle.values()) n += list.length
    return n
  }

  /** Closes every idle stream; later requests still work, on fresh streams. */
  close (): void {
    this.closed = true
    for (const [peer, list] of this.idle) {
      this.idle.delete(peer)
      for (const { ch, timer } of list) {
        clearTimeout(timer)
        finishChannel(ch.stream, true)
      }
    }
  }

  private take (peerId: string): Channel | undefined {
    const list = this.idle.get(peerId)
    while (list != null && list.length > 0) {
      const { ch, timer } = list.pop()!
      clearTimeout(timer)
      if (list.length === 0) this.idle.delete(peerId)
      // the peer or the connection may have gone while the stream sat idle
      if (usable(ch.stream)) return ch
      finishChannel(ch.stream, false)
    }
    return undefined
  }

  private put (peerId: string, ch: Channel): void {
    let list = this.idle.get(peerId)
    if (list == null) {
      list = []
      this.idle.set(peerId, list)
    }
    if (this.closed || list.length >= this.maxIdle) {
      finishChannel(ch.stream, true)
      return
    }
    const entry = {
      ch,
      timer: setTimeout(() => {
        const at = list.indexOf(entry)
        if (at >= 0) list.splice(at, 1)
        if (list.length === 0 && this.idle.get(peerId) === list) this.idle.delete(peerId)
        finishChannel(ch.stream, true)
      }, this.idleMs)
    }
    entry.timer.unref()
    list.push(entry)
  }
}

export interface InferReply {
  head (head: InferHead): Promise<void>
  data (chunk: Uint8Array): Promise<void>
  end (): Promise<void>
  error (err: unknown): Promise<void>
  /** aborted when the requester goes away: stop the runner's work */
  signal: Signal
}

/**
 * Why the serving side refused or cut a peer's infer stream. ONLY APPEND TO THIS LIST: the
 * reasons are counters in `/mesh/stats`.
 */
export const InferRefusals = [
  'streams-per-peer', 'requests-per-peer', 'request-bytes-per-peer', 'request-read-timeout', 'idle-read-timeout', 'write-stall', 'malformed-request'
] as const
export type InferRefusal = typeof InferRefusals[number]

export interface InferLimitsInit {
  /** @default MAX_INFER_STREAMS_PER_PEER */
  maxStreamsPerPeer?: number
  /** @default MAX_INFER_REQUESTS_PER_PEER */
  maxRequestsPerPeer?: number
  /** @default MAX_REQUEST_BYTES_IN_FLIGHT_PER_PEER */
  maxRequestBytesPerPeer?: number
  /** @default REQUEST_READ_TIMEOUT_MS */
  requestReadTimeoutMs?: number
  /** @default KEPT_STREAM_IDLE_READ_MS */
  idleReadMs?: number
  /** @default WRITE_STALL_MS */
  writeStallMs?: number
}

/**
 * What one agent allows each peer on its inbound `/llmesh/infer/1` streams, and the count of
 * what it refused. One per agent, shared by every stream (the per-peer figures add up over all
 * of a peer's connections).
 */
export class InferLimits {
  readonly maxStreamsPerPeer: number
  readonly maxRequestsPerPeer: number
  readonly maxRequestBytesPerPeer: number
  readonly requestReadTimeoutMs: number
  readonly idleReadMs: number
  readonly writeStallMs: number
  readonly refused: Record<InferRefusal, number> = Object.fromEntries(InferRefusals.map((r) => [r, 0])) as Record<InferRefusal, number>
  private readonly peers = new Map<string, { streams: number, requests: number, bytes: number }>()

  constructor (init: InferLimitsInit = {}) {
    this.maxStreamsPerPeer = init.maxStreamsPerPeer ?? MAX_INFER_STREAMS_PER_PEER
    this.maxRequestsPerPeer = init.maxRequestsPerPeer ?? MAX_INFER_REQUESTS_PER_PEER
    this.maxRequestBytesPerPeer = init.maxRequestBytesPerPeer ?? MAX_REQUEST_BYTES_IN_FLIGHT_PER_PEER
    this.requestReadTimeoutMs = init.requestReadTimeoutMs ?? REQUEST_READ_TIMEOUT_MS
    this.idleReadMs = init.idleReadMs ?? KEPT_STREAM_IDLE_READ_MS
    this.writeStallMs = init.writeStallMs ?? WRITE_STALL_MS
  }

  /** What one peer holds now (streams, requests being served, request bytes on their way). */
  usage (peer: string): { streams: number, requests: number, bytes: number } {
    return { ...(this.peers.get(peer) ?? { streams: 0, requests: 0, bytes: 0 }) }
  }

  count (reason: InferRefusal): void {
    this.refused[reason]++
  }

  /** @internal */
  add (peer: string, what: 'streams' | 'requests' | 'bytes', n: number): boolean {
    let p = this.peers.get(peer)
    if (p == null) {
      p = { streams: 0, requests: 0, bytes: 0 }
      this.peers.set(peer, p)
    }
    const max = what === 'streams' ? this.maxStreamsPerPeer : what === 'requests' ? this.maxRequestsPerPeer : this.maxRequestBytesPerPeer
    if (n > 0 && p[what] + n > max) return false
    p[what] += n
    if (p.streams === 0 && p.requests === 0 && p.bytes === 0) this.peers.delete(peer)
    return true
  }
}

/** Whose streams serveInfer serves, and the limits it holds them to. */
export interface ServeInferGuard {
  peer: string
  limits: InferLimits
}

/**
 * Server side of `/llmesh/infer/1`: reads and validates each request, then lets `onRequest`
 * answer through `reply`; once an answer is complete it reads the next request on the same
 * stream (its HEAD or ERROR says keepAlive), until the requester closes its side. A malformed
 * request is answered with an ERROR frame and the stream is closed, never a crash.
 *
 * With a guard, the peer is held to its limits: streams and requests at once, request bytes on
 * their way (a stream that would pass them is reset), a request frame whole within
 * requestReadTimeoutMs of the stream's opening or of its first byte (a kept stream may wait
 * idleReadMs for its next request), a requester that reads nothing for writeStallMs loses its
 * answer (ERROR when it can still be written, else a reset) and its runner slot. One timer per
 * stream, re-armed per request read.
 */
export async function serveInfer (stream: Stream, onRequest: (request: InferRequest, reply: InferReply) => Promise<void>, guard?: ServeInferGuard): Promise<void> {
  const limits = guard?.limits
  const peer = guard?.peer ?? ''
  if (limits != null && !limits.add(peer, 'streams', 1)) {
    limits.count('streams-per-peer')
    stream.abort(new LlmeshError('BUSY', 'too many infer streams from this peer'))
    return
  }
  const lp = framed(stream, { maxDataLength: MAX_INFER_REQUEST_BYTES })
  let current: Abort | undefined
  const onClose = (): void => { current?.abort(new Error('requester closed the stream')) }
  stream.addEventListener('close', onClose)
  const refuse = async (message: string): Promise<void> => {
    limits?.count('malformed-request')
    if (!canWrite(stream)) return
    const e = new LlmeshError('INVALID_REQUEST', message)
    await lp.write(encodeFrame(FrameKind.ERROR, { code: e.code, message: e.message }))
    await stream.close()
  }
  const watch = limits != null ? new RequestWatch(stream, peer, limits) : undefined
  let keepalive: Keepalive | undefined
  try {
    for (let served = 0; ; served++) {
      let frame
      try {
        frame = watch != null ? await watch.read(lp, served > 0) : await readFrame(lp)
      } catch (err) {
        if (watch?.cut === true) return
        // between requests, the requester closing its side is how a kept stream ends
        if (served > 0 && (stream.status !== 'open' || stream.remoteWriteStatus !== 'writable')) {
          if (canWrite(stream)) await stream.close()
          return
        }
        await refuse(`cannot read the request: ${(err as Error).message}`)
        return
      }
      const request = frame.kind === FrameKind.REQUEST ? parseFramePayload(InferRequestSchema, frame.payload) : undefined
      if (request == null) {
        await refuse('malformed inference request')
        return
      }
      current = new Abort()
      let more: boolean
      if (limits != null && !limits.add(peer, 'requests', 1)) {
        limits.count('requests-per-peer')
        more = await serveOne(stream, request, current, async () => { throw new LlmeshError('BUSY', 'too many requests in flight from this peer') })
      } else {
        try {
          more = await serveOne(stream, request, current, onRequest, limits, keepalive ??= new Keepalive())
        } finally {
          limits?.add(peer, 'requests', -1)
        }
      }
      current = undefined
      if (!more) {
        if (canWrite(stream)) await stream.close()
        return
      }
    }
  } catch {
    // the stream failed under us (reset, connection gone): nothing left to answer
  } finally {
    watch?.stop()
    keepalive?.dispose()
    stream.removeEventListener('close', onClose)
    limits?.add(peer, 'streams', -1)
  }
}

/**
 * The serving side's bound on reading one request: the bytes that arrive while a request is read
 * count against the peer's budget until the frame is whole, and one timer per stream, refreshed
 * at each read, cuts a read that takes too long (a kept stream's wait for its next request is
 * counted in requestReadTimeoutMs ticks up to idleReadMs; its first byte re-arms the full bound).
 */
class RequestWatch {
  cut = false
  private reading = false
  private kept = false
  private taken = 0
  private idleTicks = 0
  private readonly timer: NodeJS.Timeout

  constructor (private readonly stream: Stream, private readonly peer: string, private readonly limits: InferLimits) {
    this.timer = setTimeout(this.tick, limits.requestReadTimeoutMs)
    this.timer.unref()
    stream.addEventListener('message', this.onMessage)
  }

  private readonly tick = (): void => {
    if (!this.reading || this.cut) return
    if (this.kept && this.taken === 0 && ++this.idleTicks * this.limits.requestReadTimeoutMs < this.limits.idleReadMs) {
      this.timer.refresh()
      return
    }
    this.stop_(this.kept && this.taken === 0 ? 'idle-read-timeout' : 'request-read-timeout', `no whole request within ${this.kept && this.taken === 0 ? this.limits.idleReadMs : this.limits.requestReadTimeoutMs} ms`)
  }

  private readonly onMessage = (evt: { data: { byteLength: number } }): void => {
    if (!this.reading || this.cut) return
    const n = evt.data.byteLength
    if (this.taken === 0 && this.kept) this.timer.refresh()
    if (!this.limits.add(this.peer, 'bytes', n)) {
      this.stop_('request-bytes-per-peer', 'too many request bytes in flight from this peer')
      return
    }
    this.taken += n
  }

  private stop_ (reason: InferRefusal, message: string): void {
    this.cut = true
    this.limits.count(reason)
    this.stream.abort(new LlmeshError('INVALID_REQUEST', message))
  }

  async read (lp: FramedStream, kept: boolean): Promise<{ kind: number, payload: Uint8Array }> {
    this.kept = kept
    this.idleTicks = 0
    this.reading = true
    this.timer.refresh()
    try {
      return await readFrame(lp)
    } finally {
      this.reading = false
      this.limits.add(this.peer, 'bytes', -this.taken)
      this.taken = 0
    }
  }

  stop (): void {
    clearTimeout(this.timer)
    this.stream.removeEventListener('message', this.onMessage)
  }
}

/** The requester read nothing for writeStallMs: the answer is abandoned and its slot freed. */
class WriteStall extends LlmeshError {
  constructor (ms: number) {
    super('STALLED', `the requester read nothing for ${ms} ms; the answer was abandoned`)
  }
}

/**
 * The stream pipeline's sink on the serving side of an infer stream: frames wait here and leave
 * together in one stream write, so as one yamux frame, one noise message and one TCP write
 * instead of one of each per frame (every write costs a syscall here and a wakeup and a
 * decryption on the requester, which on a LAN is a good part of the hop). A batch the
 * coalescer hands over becomes one DATA frame and goes at once, with what waits.
 */
class FrameSink implements Sink {
  /** stream writes so far */
  sends = 0
  failed?: Error
  private frames: Uint8Array[] = []
  private bytes = 0

  constructor (private readonly stream: Stream, private readonly stallMs: number) {}

  /** A frame, to go with the next send(). */
  add (kind: FrameKind, payload?: Uint8Array | object): void {
    const f = lengthPrefixed(encodeFrame(kind, payload))
    this.frames.push(f)
    this.bytes += f.length
  }

  write (batch: Uint8Array): boolean {
    this.add(FrameKind.DATA, batch)
    this.send()
    return !this.stream.writableNeedsDrain
  }

  /**
   * True once the stream takes more writes (its muxer's window is open again) or is closed,
   * false when the requester read nothing for stallMs. The 'drain' event itself is awaited:
   * @libp2p/utils' `onDrain()` makes its promise once per stream and never renews it, so after a
   * stream's first drain it resolves at once, and a writer relying on it would queue all it
   * writes in memory while the reader does not read.
   */
  async drained (): Promise<boolean> {
    const { stream } = this
    while (stream.writableNeedsDrain && canWrite(stream)) {
      const drained = await drainedWithin(this.stallMs, (wake) => {
        stream.addEventListener('drain', wake)
        stream.addEventListener('close', wake)
        return () => {
          stream.removeEventListener('drain', wake)
          stream.removeEventListener('close', wake)
        }
      })
      if (!drained) return false
    }
    return true
  }

  /** What waits, in one stream write. */
  send (): void {
    if (this.frames.length === 0) return
    const out = this.frames.length === 1 ? this.frames[0]! : Buffer.concat(this.frames, this.bytes)
    this.sends++
    this.frames = []
    this.bytes = 0
    try {
      // the requester may have gone since the frames were queued: they have no reader
      if (canWrite(this.stream)) this.stream.send(out)
    } catch (err) {
      this.failed = err instanceof Error ? err : new Error(String(err))
    }
  }
}

/**
 * The server's frames on one stream, written through the stream pipeline (@llmesh/kit): the
 * frames written in one event-loop turn (a small answer's HEAD, DATA and END usually are) go
 * out as one stream write (FrameSink). A batch goes at the end of the turn (setImmediate), at
 * once for END and ERROR; once the body has started, DATA leaves at most every
 * STREAM_COALESCE_MS, the payloads of one window merged into one DATA frame by a Coalescer (see
 * STREAM_COALESCE_MS: a fast stream's tokens travel together, a slow one's singly). Backpressure
 * as with lp.write: a write first waits while the stream needs draining (the stream's own flag,
 * which control frames move too), for at most stallMs.
 */
class FrameBatch {
  private readonly out: FrameSink
  private readonly data: Coalescer
  /** a send at the end of this turn is scheduled */
  private scheduled = false

  constructor (
    private readonly stream: Stream,
    private readonly stallMs = WRITE_STALL_MS,
    private readonly onStall?: () => void
  ) {
    this.out = new FrameSink(stream, stallMs)
    // DATA due at once waits for this turn's send, with the turn's other frames
    this.data = new Coalescer(this.out, { copy: true, soon: this.sendSoon })
  }

  /** batches sent so far: a keepalive goes only when this did not move for a whole period */
  get flushes (): number {
    return this.out.sends
  }

  async write (kind: FrameKind, payload?: Uint8Array | object, now = false): Promise<void> {
    if (this.out.failed != null) throw this.out.failed
    if (!canWrite(this.stream)) throw new LlmeshError('PEER_UNREACHABLE', 'the requester closed the stream')
    if (this.stream.writableNeedsDrain && !await this.out.drained()) {
      // the requester does not read: nothing more can reach it, so the stream goes (the peer
      // sees the reset), and the error ends the runner's work and frees its slot
      this.out.failed = new WriteStall(this.stallMs)
      this.onStall?.()
      this.stream.abort(this.out.failed)
      throw this.out.failed
    }
    if (kind === FrameKind.DATA && payload instanceof Uint8Array) {
      // gathered as a copy: the caller may reuse its buffer once the write returns, as with lp.write
      this.data.push(payload)
      if (now) this.send()
    } else {
      this.takeData()
      this.out.add(kind, payload)
      if (now) this.send()
      else this.sendSoon()
    }
    if (this.out.failed != null) throw this.out.failed
  }

  /** A KEEPALIVE frame now, unless the requester's window is closed (it is not reading anyway). */
  keepalive (): void {
    if (this.out.failed != null || !canWrite(this.stream) || this.stream.writableNeedsDrain) return
    this.takeData()
    this.out.add(FrameKind.KEEPALIVE)
    this.send()
  }

  /** The DATA gathered so far, as one DATA frame ahead of the frame that follows. */
  private takeData (): void {
    const batch = this.data.take()
    if (batch !== undefined) this.out.add(FrameKind.DATA, batch)
  }

  private readonly sendSoon = (): void => {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(this.send)
  }

  /** Everything waiting, the DATA gathered so far included, in one stream write. */
  private readonly send = (): void => {
    this.scheduled = false
    this.takeData()
    this.out.send()
  }
}

/** Answers one request; true when the stream is left ready for the next one. */
async function serveOne (
  stream: Stream, request: InferRequest, signal: Signal,
  onRequest: (request: InferRequest, reply: InferReply) => Promise<void>, limits?: InferLimits, keepalive?: Keepalive
): Promise<boolean> {
  const out = new FrameBatch(stream, limits?.writeStallMs, limits != null ? () => { limits.count('write-stall') } : undefined)
  let finished = false
  if (request.keepaliveMs != null) keepalive?.start(Math.max(MIN_KEEPALIVE_MS, request.keepaliveMs), out)
  const reply: InferReply = {
    signal,
    head: async (head) => { await out.write(FrameKind.HEAD, { ...head, keepAlive: true }) },
    data: async (chunk) => { await out.write(FrameKind.DATA, chunk) },
    end: async () => {
      if (finished) return
      finished = true
      keepalive?.stop()
      await out.write(FrameKind.END, undefined, true)
    },
    error: async (err) => {
      if (finished) return
      finished = true
      keepalive?.stop()
      const e = toLlmeshError(err)
      await out.write(FrameKind.ERROR, { code: e.code, message: e.message, keepAlive: true, ...(e instanceof BusyError && e.admission != null ? { admission: e.admission } : e instanceof QueueFullError ? { retryAfterSec: e.retryAfterSec } : {}) }, true)
    }
  }
  try {
    await onRequest(request, reply)
    await reply.end()
    return usable(stream)
  } catch (err) {
    if (!canWrite(stream)) return false
    await reply.error(err)
    return usable(stream)
  } finally {
    keepalive?.stop()
  }
}

/**
 * KEEPALIVE frames for the requests of one stream that asked for them: one timer per stream,
 * re-armed (refreshed) per request; while a request is being answered it sends a KEEPALIVE each
 * period in which nothing else went out, and between requests it lies dormant.
 */
class Keepalive {
  private timer?: NodeJS.Timeout
  private ms = 0
  private out?: FrameBatch
  private seen = 0

  start (ms: number, out: FrameBatch): void {
    this.out = out
    this.seen = out.flushes
    if (ms !== this.ms || this.timer == null) {
      clearTimeout(this.timer)
      this.ms = ms
      this.timer = setTimeout(this.tick, ms)
      this.timer.unref()
    } else {
      this.timer.refresh()
    }
  }

  private readonly tick = (): void => {
    const out = this.out
    if (out == null) return
    if (out.flushes === this.seen) out.keepalive()
    this.seen = out.flushes
    this.timer?.refresh()
  }

  /** The answer is complete: no keepalive until the next request starts. */
  stop (): void {
    this.out = undefined
  }

  dispose (): void {
    this.out = undefined
    clearTimeout(this.timer)
  }
}

async function readFrame (lp: FramedStream): Promise<{ kind: number, payload: Uint8Array }> {
  try {
    return decodeFrame(await lp.read())
  } catch (err) {
    throw new LlmeshError('PEER_UNREACHABLE', `peer stream ended: ${(err as Error).message}`, { cause: err })
  }
}

function peerError (payload: Uint8Array): { error: LlmeshError, keepAlive: boolean } {
  const e = parseFramePayload(InferErrorSchema, payload)
  if (e == null) return { error: new LlmeshError('PROTOCOL_ERROR', 'peer sent a malformed error'), keepAlive: false }
  // (a QUEUE_FULL without a Retry-After says one second, as an older peer's 429 without one did)
  const error = e.code === 'BUSY' ? new BusyError(e.message, e.admission) : e.code === 'QUEUE_FULL' ? new QueueFullError(e.message, e.retryAfterSec ?? 1) : new LlmeshError(e.code, e.message)
  return { error, keepAlive: e.keepAlive === true }
}
