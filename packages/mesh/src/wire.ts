import type { AbortOptions, Stream } from '@libp2p/interface'
import { byteStream, InvalidDataLengthError, UnexpectedEOFError } from '@libp2p/utils'
import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { MAX_UNREAD_BYTES } from '@llmesh/kit'

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
 * aborts the stream). Below RESUME_BELOW_BYTES it is resumed. It is kit's MAX_UNREAD_BYTES, the
 * one bound on how far any consumer of a stream may fall behind its source (a runner's token
 * stream in PacedReader, a peer's frames here).
 */
export const PAUSE_ABOVE_BYTES = MAX_UNREAD_BYTES
const RESUME_BELOW_BYTES = PAUSE_ABOVE_BYTES / 4

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
 *
 * The read side is not kit's PacedReader, though both pause a source for a consumer that is
 * behind: PacedReader also paces, holding the source paused until each coalescing window ends,
 * which on this stream would delay every control frame (HEAD, END, ERROR) by up to a window;
 * and it pauses whatever the consumer waits for, where a reader here waiting inside a message
 * must not pause. The bound they share is one constant (PAUSE_ABOVE_BYTES).
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
