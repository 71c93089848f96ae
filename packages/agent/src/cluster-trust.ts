import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { formatClusterKey, newClusterKey, parseClusterKey } from '@llmesh/mesh'
import type { AgentConfig } from './config.js'
import { isLoopbackHost } from './loopback.js'

/**
 * How an agent's connections are protected:
 * - `home`: every listen address is loopback; the connection secret is derived from the cluster
 *   id, which keeps clusters apart but is no secret (nothing off this host can reach the port).
 * - `lab`: a listen address off loopback; the cluster key is required.
 * - `open`: off loopback without a key, because the user said `--open-mesh`.
 */
export type TrustMode = 'home' | 'lab' | 'open'

export interface ClusterTrust {
  mode: TrustMode
  /** the cluster key; absent in home and open mode (unless home mode found one in the data dir) */
  key?: Uint8Array
  /** the key's fingerprint (see keyId), with the key */
  keyId?: string
  /** where the key was read or written */
  keyFile?: string
  /** the key was made on this start */
  created: boolean
}

/** Name of the cluster key in the data dir. */
export const CLUSTER_KEY_FILE = 'cluster.key'

/** Short, non-secret fingerprint of a key: lets people compare two hosts' keys. */
export function keyId (key: Uint8Array): string {
  return createHash('sha256').update('llmesh/key-id/').update(key).digest('hex').slice(0, 12)
}

/**
 * True when a libp2p listen multiaddr is reachable from this host only: its address or name is
 * loopback (isLoopbackHost: 127.0.0.0/8, ::1, localhost). 0.0.0.0 and :: listen on every
 * interface, so they are not.
 */
export function isLoopbackAddr (addr: string): boolean {
  const [, proto, host] = addr.split('/')
  return ['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(proto ?? '') && host != null && isLoopbackHost(host)
}

/**
 * Decides the agent's trust mode and finds its cluster key: `--cluster-key FILE`, else the data
 * dir's cluster.key, else (lab mode) a new one written there 0600 on first start. A key file
 * that others may read is refused by `checkKeyFile`.
 */
export async function resolveClusterTrust (
  config: Pick<AgentConfig, 'clusterKeyFile' | 'openMesh' | 'dataDir' | 'p2p'>,
  checkKeyFile: (file: string) => Promise<void>
): Promise<ClusterTrust> {
  const lab = config.p2p.listen.some((a) => !isLoopbackAddr(a))
  if (config.openMesh) return { mode: lab ? 'open' : 'home', created: false }
  const file = config.clusterKeyFile ?? join(config.dataDir, CLUSTER_KEY_FILE)
  const found = await readKey(file, checkKeyFile)
  if (found != null) return withKey(lab ? 'lab' : 'home', found, file, false)
  if (config.clusterKeyFile != null) throw new Error(`cluster key ${file} not found`)
  if (!lab) return { mode: 'home', created: false }
  const key = newClusterKey()
  try {
    // exclusive: two agents starting on one data dir must not each write their own key
    await writeFile(file, formatClusterKey(key), { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    const other = await readKey(file, checkKeyFile)
    if (other == null) throw err
    return withKey('lab', other, file, false)
  }
  return withKey('lab', key, file, true)
}

function withKey (mode: TrustMode, key: Uint8Array, keyFile: string, created: boolean): ClusterTrust {
  return { mode, key, keyId: keyId(key), keyFile, created }
}

async function readKey (file: string, checkKeyFile: (file: string) => Promise<void>): Promise<Uint8Array | undefined> {
  let data: Buffer
  try {
    data = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new Error(`cannot read the cluster key ${file}: ${(err as Error).message}`, { cause: err })
  }
  await checkKeyFile(file)
  return parseClusterKey(data, file)
}
