import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { Socket } from 'node:net'
import { noise } from '@chainsafe/libp2p-noise'
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'
import type { MessageStream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

/**
 * Every patch this package makes to library internals, in one place. Each is a speed-up only
 * (the libraries are correct without it) and relies on internals no semver covers, so each is
 * applied only to the exact versions it was written and measured against (PATCHED_VERSIONS, read
 * from the installed package.json files at start). On any other version the patch is left out
 * and a warning says so: a library update may cost speed, never correctness, and never refuses
 * to start an agent (refusing would turn a routine `pnpm update` into an outage for a gain of a
 * few percent CPU). patches.test.ts fails when a version or the patched internals change, so
 * whoever updates a library re-checks the patch and adds the version here.
 */
export const PATCHED_VERSIONS: Readonly<Record<PatchedLibrary, readonly string[]>> = Object.freeze({
  /** yamuxWindowUpdates: YamuxStream.prototype.sendWindowUpdate, state, recvWindow, recvWindowCapacity */
  '@chainsafe/libp2p-yamux': ['8.0.1'],
  /** quietDecoder: EncryptedMessageStream.decoder (a LengthPrefixedDecoder: lengthDecoder, encodingLength) */
  '@chainsafe/libp2p-noise': ['17.0.0'],
  /** corkEachSend: the TCP connection's `socket` and `sendData` */
  '@libp2p/tcp': ['11.0.28']
})

export type PatchedLibrary = '@chainsafe/libp2p-yamux' | '@chainsafe/libp2p-noise' | '@libp2p/tcp'

/** Where a patch left out is reported. */
export type PatchLog = (fields: { library: string, version: string, known: readonly string[] }, msg: string) => void

const require = createRequire(import.meta.url)

/**
 * The directory a library is installed in, as Node resolves it from this package (the
 * node_modules folders up from here; not require.resolve: ESM-only packages refuse it).
 */
export function packageDir (name: PatchedLibrary): string | undefined {
  for (const dir of require.resolve.paths(name) ?? []) {
    if (existsSync(join(dir, name, 'package.json'))) return join(dir, name)
  }
  return undefined
}

/** The installed version of a library, from its package.json. */
export function installedVersion (name: PatchedLibrary): string {
  const dir = packageDir(name)
  if (dir == null) return 'unknown'
  try {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string, version?: string }
    return pkg.name === name && typeof pkg.version === 'string' ? pkg.version : 'unknown'
  } catch {
    return 'unknown'
  }
}

const verdicts = new Map<PatchedLibrary, boolean>()

/**
 * Whether the installed version of `name` (or `version`, for tests) is one its patch was
 * written for; when not, says so once per library (to `log`, else as a process warning).
 */
export function patchable (name: PatchedLibrary, log?: PatchLog, version?: string): boolean {
  let ok = version == null ? verdicts.get(name) : undefined
  if (ok == null) {
    const v = version ?? installedVersion(name)
    ok = PATCHED_VERSIONS[name].includes(v)
    if (version == null) verdicts.set(name, ok)
    if (!ok) {
      const fields = { library: name, version: v, known: PATCHED_VERSIONS[name] }
      const msg = 'library version not covered by its speed patch: patch left out (correct, slower); check patches.ts'
      if (log != null) log(fields, msg)
      else process.emitWarning(`${msg}: ${name}@${v} (patched: ${fields.known.join(', ')})`)
    }
  }
  return ok
}

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
export function noiseOneWritePerMessage (log?: PatchLog): ReturnType<typeof noise> {
  const make = noise()
  const cork = patchable('@libp2p/tcp', log)
  const quiet = patchable('@chainsafe/libp2p-noise', log)
  if (!cork && !quiet) return make
  return (components) => {
    const inner = make(components)
    const outer: typeof inner = Object.create(inner)
    const before = (conn: MessageStream): MessageStream => cork ? corkEachSend(conn) : conn
    const after = <T extends { connection: MessageStream }>(result: T): T => quiet ? quietDecoder(result) : result
    outer.secureInbound = async (conn, options) => after(await inner.secureInbound(before(conn), options))
    outer.secureOutbound = async (conn, options) => after(await inner.secureOutbound(before(conn), options))
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
 * slow lookup in the buffer list, a large share of an agent's CPU on the request path. This one
 * reads the prefix bytewise and, with fewer than 2 bytes, answers the largest length instead of
 * throwing: the decoder then sees that the message is not all there yet and waits for more, as
 * it does after the exception. Applied only to connections shaped as noise 17 makes them.
 */
export function quietDecoder<T extends { connection: MessageStream }> (result: T): T {
  const decoder = (result.connection as unknown as { decoder?: { lengthDecoder?: unknown, encodingLength?: unknown } }).decoder
  if (!isNoiseDecoder(decoder)) return result
  decoder.lengthDecoder = uint16Length
  return result
}

/** Whether `decoder` is shaped as the one noise 17 gives its encrypted streams. */
export function isNoiseDecoder (decoder: unknown): decoder is { lengthDecoder: unknown, encodingLength: (n: number) => number } {
  const d = decoder as { lengthDecoder?: unknown, encodingLength?: unknown } | undefined
  return d != null && typeof d.lengthDecoder === 'function' && typeof d.encodingLength === 'function' &&
    (d.encodingLength as (n: number) => number)(MAX_NOISE_LENGTH) === 2
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

/** The yamux internals yamuxWindowUpdates relies on; a list of what is missing (empty: all there). */
export function yamuxInternalsMissing (): string[] {
  const missing: string[] = []
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate?: unknown }
  if (typeof proto.sendWindowUpdate !== 'function') missing.push('YamuxStream.prototype.sendWindowUpdate')
  if ((StreamState as Record<string, unknown> | undefined)?.Established == null) missing.push('StreamState.Established')
  return missing
}

let windowPatched = false

/**
 * yamux window updates sent as Go's yamux sends them: once a stream's receive window is half
 * used, for the whole consumed part, instead of after every DATA frame. @chainsafe/libp2p-yamux
 * answers each DATA frame with a WINDOW_UPDATE frame, so a token stream cost the requester one
 * more noise message and socket write per frame and the server one more wakeup and decryption.
 * Only streams in the established state are held back (opening and closing frames carry flags
 * that must go); a sender is never starved: it stops only at an empty window, and by then the
 * receiver has used more than half and sends the update. Patched once per process, on yamux's
 * stream class, and only on a yamux version in PATCHED_VERSIONS.
 */
export function yamuxWindowUpdates<T> (muxer: T, log?: PatchLog): T {
  if (!windowPatched && patchable('@chainsafe/libp2p-yamux', log) && yamuxInternalsMissing().length === 0) patchWindowUpdates()
  return muxer
}

function patchWindowUpdates (): void {
  windowPatched = true
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: (this: unknown) => void }
  const original = proto.sendWindowUpdate
  proto.sendWindowUpdate = function patchedSendWindowUpdate (this: unknown) {
    const s = this as { state?: unknown, recvWindow?: unknown, recvWindowCapacity?: unknown }
    if (s.state === StreamState.Established && typeof s.recvWindow === 'number' && typeof s.recvWindowCapacity === 'number' &&
      s.recvWindowCapacity > s.recvWindow / 2) return
    original.call(this)
  }
}
