import { Socket } from 'node:net'
import { noise } from '@chainsafe/libp2p-noise'
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'
import type { AbortOptions, MessageStream, Stream } from '@libp2p/interface'
import { byteStream, InvalidDataLengthError, UnexpectedEOFError } from '@libp2p/utils'
import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'

/**
 * libp2p's noise encrypter, with each encrypted message handed to the TCP socket as one write.
 *
 * @libp2p/tcp writes every buffer of an outgoing message with its own `socket.write`, and a
 * noise message is two buffers (a 2-byte length, then the ciphertext). With TCP_NODELAY (which
 * @libp2p/tcp sets) every write is its own syscall and segment, so each message cost two
 * syscalls here and two wakeups and reads on the receiver. Corking the socket for the span of one
 * send lets Node write the buffers with a single writev. Applied only to connections shaped as
 * @libp2p/tcp makes them (a net.Socket as `socket`, a `sendData` method); others are left as
 * they are, so a libp2p change can cost this gain but not correctness.
 */
export function noiseOneWritePerMessage (): ReturnType<typeof noise> {
  const make = noise()
  return (components) => {
    const inner = make(components)
    const outer: typeof inner = Object.create(inner)
    outer.secureInbound = async (conn, options) => quietDecoder(await inner.secureInbound(corkEachSend(conn), options))
    outer.secureOutbound = async (conn, options) => quietDecoder(await inner.secureOutbound(corkEachSend(conn), options))
    return outer
  }
}

/** A noise message's largest length: its 2-byte prefix never says more. */
const MAX_NOISE_LENGTH = 0xffff

/**
 * The decrypting side's length decoder, without an exception per socket read. Noise frames its
 * messages with @libp2p/utils' LengthPrefixedDecoder, which after taking every whole message of
 * a read asks its length decoder for the next one, and noise's decoder THROWS when fewer than
 * 2 bytes are left (always, at the end of a read): an Error with a stack trace per read, plus a
 * slow lookup in the buffer list, 8% of an agent's CPU on the request path (profiled, both
 * sides of a remote request). This one reads the prefix bytewise and, with fewer
 * than 2 bytes, answers the largest length instead of throwing: the decoder then sees that the
 * message is not all there yet and waits for more, as it does after the exception. Applied only
 * to connections shaped as noise 17 makes them; others keep the original.
 */
function quietDecoder<T extends { connection: MessageStream }> (result: T): T {
  const decoder = (result.connection as unknown as { decoder?: { lengthDecoder?: unknown, encodingLength?: unknown } }).decoder
  if (decoder == null || typeof decoder.lengthDecoder !== 'function' || typeof decoder.encodingLength !== 'function' ||
    (decoder.encodingLength as (n: number) => number)(MAX_NOISE_LENGTH) !== 2) return result
  decoder.lengthDecoder = uint16Length
  return result
}

export function uint16Length (data: Uint8Array | Uint8ArrayList): number {
  if (data.byteLength < 2) return MAX_NOISE_LENGTH
  if (data instanceof Uint8Array) return (data[0]! << 8) | data[1]!
  return (data.get(0) << 8) | data.get(1)
}

function corkEachSend (conn: MessageStream): MessageStream {
  const c = conn as unknown as { socket?: unknown, sendData?: (this: unknown, data: unknown) => unknown }
  const socket = c.socket
  const sendData = c.sendData
  if (!(socket instanceof Socket) || typeof sendData !== 'function') return conn
  c.sendData = function (data) {
    socket.cork()
    try {
      return sendData.call(this, data)
    } finally {
      socket.uncork()
    }
  }
  return conn
}

let windowPatched = false

/**
 * yamux window updates sent as Go's yamux sends them: once a stream's receive window is half
 * used, for the whole consumed part, instead of after every DATA frame. @chainsafe/libp2p-yamux
 * answers each DATA frame with a WINDOW_UPDATE frame, so a token stream cost the requester one
 * more noise message and socket write per frame (a fifth of the entry agent's CPU in a
 * 1000-token stream, profiled) and the server one more wakeup and decryption. Only streams in
 * the established state are held back (opening and closing frames carry flags that must go);
 * a sender is never starved: it stops only at an empty window, and by then the receiver has
 * used more than half and sends the update. Patched once per process, on yamux's stream class;
 * if a yamux release renames what it relies on, the original behaviour stays.
 */
export function yamuxWindowUpdates<T> (muxer: T): T {
  patchWindowUpdates()
  return muxer
}

function patchWindowUpdates (): void {
  if (windowPatched) return
  windowPatched = true
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate?: (this: unknown) => void }
  const original = proto.sendWindowUpdate
  if (typeof original !== 'function') return
  proto.sendWindowUpdate = function (this: unknown) {
    const s = this as { state?: unknown, recvWindow?: unknown, recvWindowCapacity?: unknown }
    if (s.state === StreamState.Established && typeof s.recvWindow === 'number' && typeof s.recvWindowCapacity === 'number' &&
      s.recvWindowCapacity > s.recvWindow / 2) return
    original.call(this)
  }
}

/** Bytes of the longest varint length prefix read (7 bits each: up to 2^56) */
const MAX_PREFIX_BYTES = 8

/** A stream of length-prefixed messages, framed as lpStream frames them (a varint length first). */
export interface FramedStream {
  /** The next whole message. Throws once the stream ended, on a length over maxDataLength, or when aborted. */
  read: (options?: AbortOptions) => Promise<Uint8Array>
  write: (data: Uint8Array, options?: AbortOptions) => Promise<void>
}

/**
 * Unread bytes on a stream above which its reader, when it is not waiting for a message, pauses
 * the stream: yamux then stops granting the sender window, the sender's writes wait, and what
 * a slow consumer has not read stays bounded instead of overflowing the read buffer (which
 * aborts the stream). Below RESUME_BELOW_BYTES it is resumed.
 */
export const PAUSE_ABOVE_BYTES = 1024 * 1024
const RESUME_BELOW_BYTES = 256 * 1024

/**
 * Largest receive window of a yamux stream: what a sender may still have on its way after the
 * reader paused. yamux grows a busy stream's window up to 16 MB, which, arriving while paused,
 * would overflow the 4 MB a stream buffers; 1 MB still carries 1 GB/s at a 1 ms round trip.
 */
export const MAX_STREAM_WINDOW_BYTES = 1024 * 1024

/**
 * Length-prefixed messages on a libp2p stream, read as they arrive: every read takes all the
 * bytes that are there and the messages in them are cut out at once. lpStream reads a message's
 * prefix one byte at a time and then its payload, each an awaited read with its own promise,
 * options object and buffer list: three to four reads per message, and a small answer's HEAD,
 * DATA and END frames, which arrive in one chunk, cost ten (profiled: a tenth of an entry
 * agent's CPU per remote request went to lpStream's reads). A message is written with its
 * prefix in one buffer. The byte stream (end of stream, close, read-buffer bound) is libp2p's.
 * A reader that falls behind pauses the stream (PAUSE_ABOVE_BYTES); one waiting for the rest of
 * a message never does, so a message up to maxDataLength always comes in whole.
 */
export function framed (stream: Stream, opts: { maxDataLength: number }): FramedStream {
  // room for one whole message and its prefix, the unread bytes at which the stream pauses, and
  // what arrives after that: resuming hands over at once what the stream held while paused (up
  // to the sender's window)
  const bytes = byteStream(stream, { maxBufferSize: opts.maxDataLength + MAX_PREFIX_BYTES + PAUSE_ABOVE_BYTES + MAX_STREAM_WINDOW_BYTES + 64 * 1024 })
  const buf = new Uint8ArrayList()
  /** a read is waiting for bytes: the consumer keeps up, whatever is buffered */
  let waiting = false
  /** bytes received and not yet taken out as messages (in the byte stream's buffer or in `buf`) */
  let unread = 0
  stream.addEventListener('message', (evt) => {
    unread += evt.data.byteLength
    if (!waiting && stream.readStatus === 'readable' && unread > PAUSE_ABOVE_BYTES) stream.pause()
  })
  const resume = (): void => {
    if (stream.readStatus === 'paused') stream.resume()
  }
  /** the next message, if all of it is in `buf` */
  const take = (): Uint8Array | undefined => {
    const prefix = varintPrefix(buf)
    if (prefix == null) return undefined
    const { length, size } = prefix
    if (length > opts.maxDataLength) throw new InvalidDataLengthError(`message length ${length} > ${opts.maxDataLength}`)
    if (buf.byteLength < size + length) return undefined
    const message = buf.subarray(size, size + length)
    buf.consume(size + length)
    unread -= size + length
    return message
  }
  return {
    async read (options) {
      for (;;) {
        const message = take()
        if (message != null) {
          if (unread < RESUME_BELOW_BYTES) resume()
          return message
        }
        resume()
        waiting = true
        let chunk
        try {
          chunk = await bytes.read(options)
        } finally {
          waiting = false
        }
        if (chunk == null) throw new UnexpectedEOFError(buf.byteLength > 0 ? `stream ended inside a message (${buf.byteLength} bytes of it read)` : 'stream ended')
        buf.append(chunk)
      }
    },
    async write (data, options) {
      await bytes.write(lengthPrefixed(data), options)
    }
  }
}

/** A message with its varint length prefix, in one buffer. */
export function lengthPrefixed (data: Uint8Array): Uint8Array {
  const size = varint.encodingLength(data.length)
  const out = new Uint8Array(size + data.length)
  varint.encode(data.length, out)
  out.set(data, size)
  return out
}

/**
 * The varint length prefix at the start of `buf`: the length it gives and its own size in
 * bytes (as sent, so a prefix longer than it needed to be is read right too); undefined while
 * it is not all there. A prefix of more than 8 bytes (7 bits each: 2^56) gives a length no
 * maxDataLength allows. Not uint8-varint's decoder: that one throws (with a stack trace) for a
 * prefix not all there yet.
 */
export function varintPrefix (buf: Uint8Array | Uint8ArrayList): { length: number, size: number } | undefined {
  const n = Math.min(buf.byteLength, MAX_PREFIX_BYTES)
  let length = 0
  for (let i = 0, scale = 1; i < n; i++, scale *= 128) {
    const b = buf instanceof Uint8Array ? buf[i]! : buf.get(i)
    length += (b & 0x7f) * scale
    if (b < 0x80) return { length, size: i + 1 }
  }
  return n === MAX_PREFIX_BYTES ? { length: Number.MAX_SAFE_INTEGER, size: n } : undefined
}
