import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import type { NodeRecord } from '@llmesh/protocol'
import { NODES, type RecordSigner, type RecordVerifier, type Section, type SignedEntry } from '@llmesh/state'

/** Ed25519 signatures are 64 bytes. */
const ED25519_SIGNATURE_BYTES = 64

/**
 * Checks the cluster document's entries against their owner's key, which an Ed25519 peer id
 * carries itself: no lookup, no trust in whoever relayed the entry. An entry of any section
 * passes when its peer id is an Ed25519 peer id in its canonical text form and `sig` is that
 * key's signature over its content (which names the section); a node record's addresses must
 * also each parse as a multiaddr ending in `/p2p/<that id>`.
 */
export function recordVerifier (): RecordVerifier {
  return {
    verify (record: SignedEntry, content: Uint8Array, section: Section = NODES) {
      let key: PublicKey
      try {
        const id = peerIdFromString(record.peerId)
        if (id.type !== 'Ed25519' || id.publicKey == null || id.toString() !== record.peerId) return 'bad-key'
        key = id.publicKey
      } catch {
        return 'bad-key'
      }
      const addrs: unknown = section === NODES ? (record as Partial<NodeRecord>).addrs : []
      if (!Array.isArray(addrs)) return 'bad-address'
      for (const addr of addrs as unknown[]) {
        if (typeof addr !== 'string') return 'bad-address'
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

/** Signs this agent's own entries with its libp2p key (Ed25519: synchronous). */
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
