import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import type { NodeRecord } from '@llmesh/protocol'
import type { RecordSigner, RecordVerifier } from '@llmesh/state'

/** Ed25519 signatures are 64 bytes. */
const ED25519_SIGNATURE_BYTES = 64

/**
 * Checks NodeRecords against their owner's key, which an Ed25519 peer id carries itself: no
 * lookup, no trust in whoever relayed the record. A record passes when its peer id is an
 * Ed25519 peer id in its canonical text form, every address parses as a multiaddr ending in
 * `/p2p/<that id>`, and `sig` is that key's signature over the record's content.
 */
export function recordVerifier (): RecordVerifier {
  return {
    verify (record: NodeRecord, content: Uint8Array) {
      let key: PublicKey
      try {
        const id = peerIdFromString(record.peerId)
        if (id.type !== 'Ed25519' || id.publicKey == null || id.toString() !== record.peerId) return 'bad-key'
        key = id.publicKey
      } catch {
        return 'bad-key'
      }
      for (const addr of record.addrs) {
        try {
          const last = multiaddr(addr).getComponents().at(-1)
          if (last?.name !== 'p2p' || last.value !== record.peerId) return 'bad-address'
        } catch {
          return 'bad-address'
        }
      }
      const sig = Buffer.from(record.sig, 'base64url')
      if (sig.length !== ED25519_SIGNATURE_BYTES || sig.toString('base64url') !== record.sig) return 'bad-signature'
      try {
        return key.verify(content, sig) === true ? undefined : 'bad-signature'
      } catch {
        return 'bad-signature'
      }
    }
  }
}

/** Signs this agent's own record with its libp2p key (Ed25519: synchronous). */
export function recordSigner (privateKey: PrivateKey): RecordSigner {
  if (privateKey.type !== 'Ed25519') throw new Error(`records are signed with an Ed25519 key, not ${privateKey.type}`)
  return {
    sign (content: Uint8Array): string {
      const sig = privateKey.sign(content)
      if (sig instanceof Promise) throw new Error('the peer key signs asynchronously')
      return Buffer.from(sig).toString('base64url')
    }
  }
}
