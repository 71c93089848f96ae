import { describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { NodeRecord, UnsignedNodeRecord } from '@llmesh/protocol'
import { recordContent } from '@llmesh/state'
import { recordSigner, recordVerifier } from './record-trust.js'

function record (peerId: string, addrs: string[] = []): UnsignedNodeRecord {
  return {
    peerId, name: 'n', version: 'test', protocol: 1, addrs, api: '127.0.0.1:1',
    hardware: { cpus: 1, memBytes: 1, platform: 'linux', arch: 'x64' }, models: [], runners: [], startedAt: 1, updatedAt: 1
  }
}

describe('record signatures (Ed25519 peer keys)', () => {
  it('passes the owner\'s signed record and names what is wrong with every other', async () => {
    const key = await generateKeyPair('Ed25519')
    const other = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    const sign = (r: UnsignedNodeRecord, k = key): NodeRecord => ({ ...r, sig: recordSigner(k).sign(recordContent(r)) })
    const check = (r: NodeRecord): string | undefined => recordVerifier().verify(r, recordContent(r))

    const good = sign(record(id, [`/ip4/127.0.0.1/tcp/4001/p2p/${id}`]))
    expect(check(good)).toBeUndefined()
    expect(check({ ...good, name: 'changed' })).toBe('bad-signature')
    expect(check({ ...good, sig: good.sig.slice(0, -2) })).toBe('bad-signature')
    expect(check(sign(record(id), other))).toBe('bad-signature')
    expect(check(sign(record('not-a-peer-id')))).toBe('bad-key')
    // an RSA-style id (a hash, no key inside) cannot check anything
    expect(check(sign(record('QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N')))).toBe('bad-key')
    expect(check(sign(record(id, ['/ip4/127.0.0.1/tcp/4001'])))).toBe('bad-address')
    expect(check(sign(record(id, [`/ip4/127.0.0.1/tcp/4001/p2p/${peerIdFromPrivateKey(other).toString()}`])))).toBe('bad-address')
    expect(check(sign(record(id, ['not a multiaddr'])))).toBe('bad-address')
    expect(check(sign(record(id, [`/ip4/999.0.0.1/tcp/1/p2p/${id}`])))).toBe('bad-address')
  })
})
