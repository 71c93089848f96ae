import { createHash, randomBytes } from 'node:crypto'

/** Bytes of a cluster key: the private-network pre-shared key (XSalsa20, 256 bits). */
export const CLUSTER_KEY_BYTES = 32

const SWARM_KEY_HEADER = '/key/swarm/psk/1.0.0/\n/base16/\n'

/** A new random cluster key. */
export function newClusterKey (): Uint8Array {
  return new Uint8Array(randomBytes(CLUSTER_KEY_BYTES))
}

/**
 * The connection secret of a cluster: its key when it has one (lab mode), else a hash of the
 * cluster id (home mode, and `--open-mesh`). The hash is no secret, anyone who knows the id can
 * derive it; what it buys is that agents of two clusters can never complete a connection, so
 * no protocol (sync, metrics, infer, gossip) ever sees a peer of another cluster.
 */
export function connectionSecret (clusterId: string, key?: Uint8Array): Uint8Array {
  if (key != null) {
    if (key.length !== CLUSTER_KEY_BYTES) throw new Error(`a cluster key has ${CLUSTER_KEY_BYTES} bytes, got ${key.length}`)
    return key
  }
  return new Uint8Array(createHash('sha256').update(`llmesh/open-cluster/${clusterId}`).digest())
}

/** The secret in the swarm-key file format that `@libp2p/pnet` reads. */
export function swarmKey (secret: Uint8Array): Uint8Array {
  return new TextEncoder().encode(SWARM_KEY_HEADER + Buffer.from(secret).toString('hex'))
}

/**
 * The mDNS service tag of a cluster: a hash of its connection secret, so the broadcast names
 * neither the key nor the plain cluster id, and agents only answer their own cluster's queries.
 */
export function mdnsServiceTag (secret: Uint8Array): string {
  const tag = createHash('sha256').update('llmesh/mdns/').update(secret).digest('hex').slice(0, 16)
  return `_llmesh-${tag}._udp.local`
}

/**
 * Reads a cluster key file: the swarm-key format `cluster.key` is written in, 64 hex digits, or
 * the 32 raw bytes. Anything else is an error naming the file.
 */
export function parseClusterKey (data: Uint8Array, file = 'cluster key'): Uint8Array {
  if (data.length === CLUSTER_KEY_BYTES) return new Uint8Array(data)
  const text = new TextDecoder().decode(data).trim()
  const hex = text.startsWith('/key/swarm/psk/1.0.0/') ? text.split(/\r?\n/).at(-1)?.trim() ?? '' : text
  if (/^[0-9a-fA-F]{64}$/.test(hex)) return new Uint8Array(Buffer.from(hex, 'hex'))
  throw new Error(`${file} is not a cluster key (expected the swarm-key format written by llmesh, 64 hex digits or ${CLUSTER_KEY_BYTES} raw bytes)`)
}

/** The text `cluster.key` holds: the swarm-key format, so the file works with other libp2p tools too. */
export function formatClusterKey (key: Uint8Array): string {
  return `${SWARM_KEY_HEADER}${Buffer.from(key).toString('hex')}\n`
}
