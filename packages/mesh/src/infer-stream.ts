import type { Stream } from '@libp2p/interface'
import {
  BusyError, FrameKind, InferErrorSchema, InferHeadSchema, InferRequestSchema, LlmeshError, MAX_INFER_REQUEST_BYTES, STREAM_COALESCE_MS,
  Abort, abortSignalOf, decodeFrame, encodeFrame, parseFramePayload, toLlmeshError,
  type InferHead, type InferRequest, type Signal
} from '@llmesh/protocol'
import { INFER_STREAM_IDLE_MS, MAX_IDLE_INFER_STREAMS } from './constants.js'
import { framed, lengthPrefixed, type FramedStream } from './wire.js'

/** Largest response frame accepted; runners' chunks are far smaller. */
const MAX_RESPONSE_FRAME_BYTES = 4 * 1024 * 1024

/** DATA payloads merged into one frame go out once they reach this size, whatever the timing. */
const MAX_MERGED_DATA_BYTES = 256 * 1024

export interface InferResponse {
  head: InferHead
  /** response bytes as the runner produced them; throws an LlmeshError if the peer fails midway */
  body: AsyncIterable<Uint8Array>
}

/** A requester's stream with its one length-prefixed reader (a second reader would steal bytes). */
interface Channel {
  stream: Stream
  lp: FramedStream
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
export async function requestInfer (stream: Stream, request: InferRequest, signal?: Signal): Promise<InferResponse> {
  return await exchange(channelOf(stream), request, signal, (outcome) => { finishChannel(stream, outcome !== 'abort') })
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
async function exchange (ch: Channel, request: InferRequest, signal: Signal | undefined, done: (outcome: Outcome) => void): Promise<InferResponse> {
  const { lp } = ch
  if (signal?.aborted === true) {
    done('reuse')
    throw signal.reason
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
    signal?.removeEventListener('abort', onAbort)
    done(outcome)
  }
  let head: InferHead
  let keepAlive: boolean
  try {
    await lp.write(encodeFrame(FrameKind.REQUEST, request))
    const first = await readFrame(lp)
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
        const frame = await readFrame(lp)
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
  async request (peerId: string, request: InferRequest, signal?: Signal): Promise<InferResponse> {
    const ch = this.take(peerId) ?? channelOf(await this.openFor(peerId, signal))
    return await exchange(ch, request, signal, (outcome) => {
      if (outcome === 'reuse' && usable(ch.stream)) this.put(peerId, ch)
      else finishChannel(ch.stream, outcome !== 'abort')
    })
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
 * Server side of `/llmesh/infer/1`: reads and validates each request, then lets `onRequest`
 * answer through `reply`; once an answer is complete it reads the next request on the same
 * stream (its HEAD or ERROR says keepAlive), until the requester closes its side. A malformed
 * request is answered with an ERROR frame and the stream is closed, never a crash.
 */
export async function serveInfer (stream: Stream, onRequest: (request: InferRequest, reply: InferReply) => Promise<void>): Promise<void> {
  const lp = framed(stream, { maxDataLength: MAX_INFER_REQUEST_BYTES })
  let current: Abort | undefined
  const onClose = (): void => { current?.abort(new Error('requester closed the stream')) }
  stream.addEventListener('close', onClose)
  const refuse = async (message: string): Promise<void> => {
    if (!canWrite(stream)) return
    const e = new LlmeshError('INVALID_REQUEST', message)
    await lp.write(encodeFrame(FrameKind.ERROR, { code: e.code, message: e.message }))
    await stream.close()
  }
  try {
    for (let served = 0; ; served++) {
      let frame
      try {
        frame = await readFrame(lp)
      } catch (err) {
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
      const more = await serveOne(stream, request, current, onRequest)
      current = undefined
      if (!more) {
        if (canWrite(stream)) await stream.close()
        return
      }
    }
  } catch {
    // the stream failed under us (reset, connection gone): nothing left to answer
  } finally {
    stream.removeEventListener('close', onClose)
  }
}

/**
 * Resolves once the stream takes more writes (its muxer's window is open again) or is closed.
 * The 'drain' event itself is awaited: @libp2p/utils' `onDrain()` makes its promise once per
 * stream and never renews it, so after a stream's first drain it resolves at once and a writer
 * relying on it queues everything it writes while the reader does not read (measured: 12 MB
 * held in the serving side's write buffer for a requester that paused).
 */
async function writable (stream: Stream): Promise<void> {
  while (stream.writableNeedsDrain && canWrite(stream)) {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        stream.removeEventListener('drain', done)
        stream.removeEventListener('close', done)
        resolve()
      }
      stream.addEventListener('drain', done)
      stream.addEventListener('close', done)
    })
  }
}

/**
 * The server's frames on one stream, sent in batches: the frames written in one event-loop turn
 * (a small answer's HEAD, DATA and END usually are) go out as one stream write, so as one yamux
 * frame, one noise message and one TCP write instead of three of each. Every write costs a
 * syscall here and a wakeup and a decryption on the requester, which on a LAN is a good part of
 * the hop. A batch goes at the end of the turn (setImmediate), at once for END and ERROR; once
 * the body has started, DATA leaves at most every STREAM_COALESCE_MS, the payloads of one batch
 * merged into one DATA frame (see STREAM_COALESCE_MS: a fast stream's tokens travel together,
 * a slow one's singly, as before). Backpressure as with lp.write: a write waits while the
 * stream needs draining.
 */
class FrameBatch {
  private frames: Uint8Array[] = []
  private bytes = 0
  /** DATA payloads not yet framed: merged into one frame at the flush */
  private data: Uint8Array[] = []
  private dataBytes = 0
  private scheduled = false
  private timer?: NodeJS.Timeout
  private lastDataAt = -Infinity
  private failed?: Error

  constructor (private readonly stream: Stream, private readonly coalesceMs = STREAM_COALESCE_MS, private readonly now: () => number = performance.now.bind(performance)) {}

  async write (kind: FrameKind, payload?: Uint8Array | object, now = false): Promise<void> {
    if (this.failed != null) throw this.failed
    if (!canWrite(this.stream)) throw new LlmeshError('PEER_UNREACHABLE', 'the requester closed the stream')
    await writable(this.stream)
    if (kind === FrameKind.DATA && payload instanceof Uint8Array) {
      // a copy: the caller may reuse its buffer once the write returns, as with lp.write
      this.data.push(payload.slice())
      this.dataBytes += payload.length
      if (this.dataBytes >= MAX_MERGED_DATA_BYTES) now = true
    } else {
      this.frameData()
      this.push(encodeFrame(kind, payload))
    }
    if (now) {
      this.flush()
      if (this.failed != null) throw this.failed
      return
    }
    if (this.scheduled) return
    this.scheduled = true
    const wait = this.data.length > 0 ? this.lastDataAt + this.coalesceMs - this.now() : 0
    if (wait > 0) this.timer = setTimeout(this.flush, wait)
    else setImmediate(this.flush)
  }

  private push (frame: Uint8Array): void {
    const f = lengthPrefixed(frame)
    this.frames.push(f)
    this.bytes += f.length
  }

  /** Frames the DATA payloads gathered so far, as one DATA frame. */
  private frameData (): void {
    if (this.data.length === 0) return
    const payload = this.data.length === 1 ? this.data[0]! : Buffer.concat(this.data)
    this.data = []
    this.dataBytes = 0
    this.push(encodeFrame(FrameKind.DATA, payload))
  }

  private readonly flush = (): void => {
    this.scheduled = false
    clearTimeout(this.timer)
    if (this.data.length > 0) this.lastDataAt = this.now()
    this.frameData()
    if (this.frames.length === 0) return
    const out = this.frames.length === 1 ? this.frames[0]! : Buffer.concat(this.frames, this.bytes)
    this.frames = []
    this.bytes = 0
    try {
      // the requester may have gone since the write was queued: its frames have no reader
      if (canWrite(this.stream)) this.stream.send(out)
    } catch (err) {
      this.failed = err instanceof Error ? err : new Error(String(err))
    }
  }
}

/** Answers one request; true when the stream is left ready for the next one. */
async function serveOne (
  stream: Stream, request: InferRequest, signal: Signal,
  onRequest: (request: InferRequest, reply: InferReply) => Promise<void>
): Promise<boolean> {
  const out = new FrameBatch(stream)
  let finished = false
  const reply: InferReply = {
    signal,
    head: async (head) => { await out.write(FrameKind.HEAD, { ...head, keepAlive: true }) },
    data: async (chunk) => { await out.write(FrameKind.DATA, chunk) },
    end: async () => {
      if (finished) return
      finished = true
      await out.write(FrameKind.END, undefined, true)
    },
    error: async (err) => {
      if (finished) return
      finished = true
      const e = toLlmeshError(err)
      await out.write(FrameKind.ERROR, { code: e.code, message: e.message, keepAlive: true, ...(e instanceof BusyError && e.admission != null ? { admission: e.admission } : {}) }, true)
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
  const error = e.code === 'BUSY' ? new BusyError(e.message, e.admission) : new LlmeshError(e.code, e.message)
  return { error, keepAlive: e.keepAlive === true }
}
