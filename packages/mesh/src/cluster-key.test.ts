import { afterEach, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { pino } from 'pino'
import { ClusterDoc } from '@llmesh/state'
import { Mesh } from './mesh.js'
import { recordSigner, recordVerifier } from './record-trust.js'
import { connectionSecret, formatClusterKey, mdnsServiceTag, newClusterKey, parseClusterKey } from './cluster-key.js'

const logger = pino({ level: 'silent' })
const started: Mesh[] = []
afterEach(async () => { await Promise.all(started.splice(0).map(async (m) => { await m.stop() })) })

async function startMesh (clusterId: string, clusterKey?: Uint8Array, bootstrap: string[] = []): Promise<Mesh> {
  const privateKey = await generateKeyPair('Ed25519')
  const mesh = new Mesh({
    clusterId, ...(clusterKey != null ? { clusterKey } : {}), privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap,
    doc: new ClusterDoc(peerIdFromPrivateKey(privateKey).toString(), undefined, { verifier: recordVerifier(), signer: recordSigner(privateKey) }), logger, incarnation: Date.now(),
    metrics: () => ({ slotsBusy: 0, slotsTotal: 0, queueDepth: 0, tokensPerSec: 0, latencyMs: 0, successRate: 1, claims: {} })
  })
  await mesh.start()
  started.push(mesh)
  return mesh
}

async function until (cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe('cluster key', () => {
  it('reads back what it writes, in every accepted form, and refuses the rest', () => {
    const key = newClusterKey()
    const same = (k: Uint8Array): boolean => Buffer.from(k).equals(Buffer.from(key))
    expect(same(parseClusterKey(new TextEncoder().encode(formatClusterKey(key))))).toBe(true)
    expect(same(parseClusterKey(new TextEncoder().encode(Buffer.from(key).toString('hex') + '\n')))).toBe(true)
    expect(same(parseClusterKey(key))).toBe(true)
    expect(() => parseClusterKey(new TextEncoder().encode('secret'), 'my.key')).toThrow(/my.key is not a cluster key/)
  })

  it('derives a distinct secret per cluster id, and an mDNS tag that names neither key nor id', () => {
    expect(Buffer.from(connectionSecret('a')).equals(Buffer.from(connectionSecret('b')))).toBe(false)
    const key = newClusterKey()
    expect(connectionSecret('a', key)).toBe(key)
    const tag = mdnsServiceTag(connectionSecret('lab-7'))
    expect(tag).toMatch(/^_llmesh-[0-9a-f]{16}\._udp\.local$/)
    expect(tag).not.toContain('lab-7')
    expect(() => connectionSecret('a', new Uint8Array(5))).toThrow(/32 bytes/)
  })

  it('connects agents of one cluster; agents of another cluster id or key never complete a connection', async () => {
    const key = newClusterKey()
    const a = await startMesh('one', key)
    const b = await startMesh('one', key, a.addrs())
    await until(() => b.connectedPeers().includes(a.peerId))
    // dialling a's address again and again (every bootstrap redial), neither stranger gets in
    const otherId = await startMesh('two', undefined, a.addrs())
    const otherKey = await startMesh('one', newClusterKey(), a.addrs())
    const keyless = await startMesh('one', undefined, a.addrs())
    const c = await startMesh('one', key, a.addrs())
    await until(() => c.connectedPeers().includes(a.peerId))
    await new Promise((resolve) => setTimeout(resolve, 2500))
    expect(a.connectedPeers().sort()).toEqual([b.peerId, c.peerId].sort())
    for (const m of [otherId, otherKey, keyless]) expect(m.connectedPeers()).toEqual([])
  })
})
