import { describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import * as Y from 'yjs'
import type { NodeRecord, UnsignedNodeRecord } from '@llmesh/protocol'
import { placement, unsignedPinsEntry, unsignedPlacementsEntry } from '@llmesh/testkit'
import { ClusterDoc, NODES, PINS, PLACEMENTS, entryContent, recordContent, type Section } from '@llmesh/state'
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

describe('placements and pins signatures (Ed25519 peer keys)', () => {
  it('passes each section\'s entry only under the signature made for that section', async () => {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    const signer = recordSigner(key)
    const check = (section: Section, entry: Record<string, unknown>): string | undefined =>
      recordVerifier().verify(entry as unknown as NodeRecord, entryContent(section, entry), section)
    // one value that passes the pins and the placements schema: only the signature's section differs
    const value = { ...unsignedPlacementsEntry(id, [placement('m')], 1), pins: [] }
    const asPins = { ...value, sig: signer.sign(entryContent(PINS, value)) }
    const asPlacements = { ...value, sig: signer.sign(entryContent(PLACEMENTS, value)) }
    expect(check(PINS, asPins)).toBeUndefined()
    expect(check(PLACEMENTS, asPlacements)).toBeUndefined()
    expect(check(PLACEMENTS, asPins)).toBe('bad-signature')
    expect(check(PINS, asPlacements)).toBe('bad-signature')
    const asNode = { ...value, sig: signer.sign(recordContent(value)) }
    expect(check(NODES, asNode)).toBe('bad-address') // no addresses: not a node record
    expect(check(PLACEMENTS, asNode)).toBe('bad-signature')
    expect(check(PINS, asNode)).toBe('bad-signature')
    // a node record's signature is the one it always was: its context line did not change
    const r = record(id)
    expect(Buffer.from(recordContent(r)).toString().startsWith('llmesh-node-record/1\n')).toBe(true)
    expect(check(NODES, { ...r, sig: signer.sign(recordContent(r)) })).toBeUndefined()
    expect(recordVerifier().verify({ ...r, sig: signer.sign(recordContent(r)) }, recordContent(r))).toBeUndefined()
  })

  it('shows a peer\'s placements and pins in another\'s document only as their owner signed them', async () => {
    const keys = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
    const [a, b] = keys.map((k) => new ClusterDoc(peerIdFromPrivateKey(k).toString(), undefined, { verifier: recordVerifier(), signer: recordSigner(k) }))
    a!.onLocalUpdate((u) => expect(b!.applyRemote(u, a!.peerId)).toEqual({ applied: true }))
    a!.setSelf(record(a!.peerId, [`/ip4/127.0.0.1/tcp/4001/p2p/${a!.peerId}`]))
    a!.setOwn(PLACEMENTS, unsignedPlacementsEntry(a!.peerId, [placement('m', { state: 'ready' })], 1))
    a!.setOwn(PINS, unsignedPinsEntry(a!.peerId, [{ model: 'm' }], 1))
    expect(b!.get(a!.peerId)).toBeDefined()
    expect(b!.placements().get(a!.peerId)?.placements[0]?.state).toBe('ready')
    expect(b!.pins().get(a!.peerId)?.pins[0]?.model).toBe('m')

    // over sync, a's real pins signature moved onto a placements value of a: left out
    const pinsValue = a!.doc.getMap(PINS).get(a!.peerId) as Record<string, unknown>
    const c = new ClusterDoc('c', undefined, { verifier: recordVerifier() })
    const f = new Y.Doc()
    f.getMap(PLACEMENTS).set(a!.peerId, { ...pinsValue, placements: [] })
    expect(c.applyRemote(Y.encodeStateAsUpdate(f))).toEqual({ applied: true })
    expect(c.placements().size).toBe(0)
    expect(c.stats.invalidRecords.get('bad-signature')).toBe(1)
  })
})
