import type { NodeRecord, UnsignedNodeRecord } from '@llmesh/protocol'

/**
 * Why an entry of the document is not in the view. ONLY APPEND: the names are counters in
 * `/mesh/stats`.
 * - `schema`: not a NodeRecord (wrong shape, out-of-bounds figure, no signature)
 * - `key-mismatch`: stored under another key than its own `peerId`
 * - `bad-key`: the peer id is not one whose public key can check a signature (Ed25519)
 * - `bad-address`: an address that does not parse as a multiaddr ending in `/p2p/<owner>`
 * - `bad-signature`: the signature is not the owner's over the record's content
 */
export const InvalidReasons = ['schema', 'key-mismatch', 'bad-key', 'bad-address', 'bad-signature'] as const
export type InvalidReason = typeof InvalidReasons[number]

/**
 * Checks a record against its owner's key. Implemented where the libp2p key types live
 * (`@llmesh/mesh`); this package stays free of them. Must not throw.
 */
export interface RecordVerifier {
  /** `record` has passed the schema and sits under its own key; `content` is recordContent(record) */
  verify: (record: NodeRecord, content: Uint8Array) => Exclude<InvalidReason, 'schema' | 'key-mismatch'> | undefined
}

/** Signs this peer's own record content with its key. */
export interface RecordSigner {
  sign: (content: Uint8Array) => string
}

/** Domain separation: a record signature can never be taken for a signature of anything else. */
const RECORD_CONTEXT = 'llmesh-node-record/1\n'

/**
 * The bytes an owner signs and everyone verifies: a context line, then the record as
 * deterministic JSON (object keys sorted at every level, `sig` left out, `undefined` members
 * left out as JSON.stringify does). Computed over the stored value, not a parsed copy, so schema
 * defaults cannot change what was signed. Throws on values JSON cannot carry (bigint).
 */
export function recordContent (record: UnsignedNodeRecord | Record<string, unknown>): Uint8Array {
  const { sig: _sig, ...rest } = record as Record<string, unknown>
  return new TextEncoder().encode(RECORD_CONTEXT + canonicalJson(rest))
}

function canonicalJson (value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v == null || typeof v !== 'object' || Array.isArray(v)) return v
    const sorted: Record<string, unknown> = Object.create(null) as Record<string, unknown>
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k]
    return sorted
  }) ?? 'null'
}
