import { mkdir, readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import {
  AGENT_INFO_FILE, CLUSTER_KEY_BYTES, CLUSTER_KEY_FILE, formatClusterKey, isLoopbackAddr, keyId, newClusterKey, parseClusterKey, parseConfig, writeFileExclusive, type AgentInfo
} from '@llmesh/agent'

/** Prefix of a join token; the version lets a later format be told apart. */
const TOKEN_PREFIX = 'llmesh-join-1.'

/** What a join token carries: the cluster's id and key and where to find one of its hosts. */
export interface JoinToken {
  clusterId: string
  key: Uint8Array
  /** multiaddrs (with /p2p/<id>) of the host that made the token */
  addrs: string[]
}

export function encodeJoinToken (t: JoinToken): string {
  const json = JSON.stringify({ c: t.clusterId, k: Buffer.from(t.key).toString('hex'), a: t.addrs })
  return TOKEN_PREFIX + Buffer.from(json).toString('base64url')
}

/** Decodes a join token; one clear line when it is not one. */
export function decodeJoinToken (token: string): JoinToken {
  const bad = (why: string): Error => new Error(`--join: not a join token (${why}); get one with 'llmesh invite' on a host of the cluster`)
  const text = token.trim()
  if (!text.startsWith(TOKEN_PREFIX)) throw bad(`it should start with '${TOKEN_PREFIX}'`)
  let raw: unknown
  try {
    raw = JSON.parse(Buffer.from(text.slice(TOKEN_PREFIX.length), 'base64url').toString('utf8'))
  } catch {
    throw bad('it does not decode; was it cut when copied?')
  }
  const r = raw as { c?: unknown, k?: unknown, a?: unknown }
  if (typeof r.c !== 'string' || typeof r.k !== 'string' || !/^[0-9a-f]{64}$/.test(r.k) ||
    !Array.isArray(r.a) || !r.a.every((x) => typeof x === 'string' && x.length < 512) || r.a.length > 32) {
    throw bad('a field is missing or malformed')
  }
  return { clusterId: r.c, key: new Uint8Array(Buffer.from(r.k, 'hex')), addrs: r.a as string[] }
}

/**
 * Stores a joined cluster's key in the data dir (0600). The same key already there is fine; a
 * different one is an error: the host belongs to another cluster, and replacing its key
 * silently would cut it off from that cluster.
 */
export async function storeJoinedKey (dataDir: string, key: Uint8Array): Promise<string> {
  const file = join(dataDir, CLUSTER_KEY_FILE)
  const existing = await readFile(file).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return undefined; throw err })
  if (existing != null) {
    if (Buffer.from(parseClusterKey(existing, file)).equals(Buffer.from(key))) return file
    throw new Error(`${file} holds the key of another cluster (key ${keyId(parseClusterKey(existing, file))}); move it away to join this one (key ${keyId(key)})`)
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  await writeFileExclusive(file, formatClusterKey(key))
  return file
}

export interface InviteResult {
  token: string
  clusterId: string
  keyId: string
  addrs: string[]
}

/**
 * `llmesh invite`: a join token for the agent of a data dir, made from its cluster key and the
 * addresses the running agent listens on (off-loopback ones when it has any: the token is for
 * other hosts).
 */
export async function invite (opts: { dataDir?: string, clusterKeyFile?: string }): Promise<InviteResult> {
  const dataDir = opts.dataDir ?? parseConfig({}).dataDir
  const file = opts.clusterKeyFile ?? join(dataDir, CLUSTER_KEY_FILE)
  let key: Uint8Array
  try {
    key = parseClusterKey(await readFile(file), file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    throw new Error(`no cluster key at ${file}: an agent listening off loopback creates one on its first start ('llmesh up'), or make one with 'llmesh keygen'`)
  }
  let info: AgentInfo
  try {
    info = JSON.parse(await readFile(join(dataDir, AGENT_INFO_FILE), 'utf8')) as AgentInfo
  } catch {
    throw new Error(`no running agent found in ${dataDir}: start it with 'llmesh up' first (the token carries its addresses)`)
  }
  const reachable = info.addrs.filter((a) => !isLoopbackAddr(a))
  const addrs = reachable.length > 0 ? reachable : info.addrs
  const clusterId = info.clusterId
  return { token: encodeJoinToken({ clusterId, key, addrs }), clusterId, keyId: keyId(key), addrs }
}

/** `llmesh keygen`: writes a new cluster key (0600) to `out`, never over an existing file. */
export async function keygen (out: string): Promise<{ file: string, keyId: string, bytes: number }> {
  const key = newClusterKey()
  await mkdir(dirname(out), { recursive: true, mode: 0o700 })
  try {
    await writeFileExclusive(out, formatClusterKey(key))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new Error(`${out} exists: a key is never overwritten (move it away first)`)
    throw err
  }
  return { file: out, keyId: keyId(key), bytes: CLUSTER_KEY_BYTES }
}
