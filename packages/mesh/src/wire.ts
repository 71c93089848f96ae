import { Socket } from 'node:net'
import { noise } from '@chainsafe/libp2p-noise'
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'
import type { MessageStream, Stream } from '@libp2p/interface'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import type { Uint8ArrayList } from 'uint8arraylist'

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

/** Thrown when a length prefix is not all there yet: one instance, so no stack trace is taken. */
const INCOMPLETE_PREFIX = new RangeError('length prefix incomplete')
/** Bytes of the longest varint length prefix read (7 bits each: up to 2^56) */
const MAX_PREFIX_BYTES = 8

/**
 * lpStream with a varint length decoder that does not build an Error per message. lpStream
 * reads a message's prefix byte by byte and tries to decode it after each; uint8-varint throws
 * a new RangeError (with its stack trace) for every prefix not yet complete, i.e. once for every
 * message of 128 bytes or more: 5% of an agent's CPU on the request path, profiled. This decoder
 * throws one shared RangeError instead, which lpStream takes the same way (read another byte).
 */
export function framed (stream: Stream, opts: { maxDataLength: number }): LengthPrefixedStream<Stream> {
  return lpStream(stream, { maxDataLength: opts.maxDataLength, lengthDecoder: varintLength })
}

export function varintLength (buf: Uint8Array | Uint8ArrayList): number {
  const n = Math.min(buf.byteLength, MAX_PREFIX_BYTES)
  let value = 0
  for (let i = 0, scale = 1; i < n; i++, scale *= 128) {
    const b = buf instanceof Uint8Array ? buf[i]! : buf.get(i)
    value += (b & 0x7f) * scale
    if (b < 0x80) return value
  }
  if (n === MAX_PREFIX_BYTES) return Number.MAX_SAFE_INTEGER // beyond any maxDataLength: lpStream refuses it
  throw INCOMPLETE_PREFIX
}
