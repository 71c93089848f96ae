import { Socket } from 'node:net'
import { noise } from '@chainsafe/libp2p-noise'
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'
import type { MessageStream } from '@libp2p/interface'

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
    outer.secureInbound = async (conn, options) => await inner.secureInbound(corkEachSend(conn), options)
    outer.secureOutbound = async (conn, options) => await inner.secureOutbound(corkEachSend(conn), options)
    return outer
  }
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
