import type { NodeRecord, PinsEntry, PlacementsEntry, UnsignedNodeRecord, UnsignedPinsEntry, UnsignedPlacementsEntry } from '@llmesh/protocol'

/** Name of the top-level Y.Map holding one NodeRecord per peer, keyed by peer id. */
export const NODES = 'nodes'
/** Name of the top-level Y.Map holding each host's PlacementsEntry, keyed by its peer id. */
export const PLACEMENTS = 'placements'
/** Name of the top-level Y.Map holding each peer's PinsEntry, keyed by its peer id. */
export const PINS = 'pins'

/** The sections of the cluster document: every entry of each is keyed by, written and signed by one peer. */
export const SECTIONS = [NODES, PLACEMENTS, PINS] as const
export type Section = typeof SECTIONS[number]

/** What each section holds, signed. */
export interface SectionEntries {
  nodes: NodeRecord
  placements: PlacementsEntry
  pins: PinsEntry
}
/** What an owner writes in each section, before signing. */
export interface UnsignedSectionEntries {
  nodes: UnsignedNodeRecord
  placements: UnsignedPlacementsEntry
  pins: UnsignedPinsEntry
}
/** An entry of any section. */
export type SignedEntry = SectionEntries[Section]

/**
 * Why an entry of the document is not in the view. ONLY APPEND: the names are counters in
 * `/mesh/stats`.
 * - `schema`: not an entry of its section (wrong shape, out-of-bounds figure, no signature)
 * - `key-mismatch`: stored under another key than its own `peerId`
 * - `bad-key`: the peer id is not one whose public key can check a signature (Ed25519)
 * - `bad-address`: an address that does not parse as a multiaddr ending in `/p2p/<owner>`
 * - `bad-signature`: the signature is not the owner's over the entry's content in its section
 */
export const InvalidReasons = ['schema', 'key-mismatch', 'bad-key', 'bad-address', 'bad-signature'] as const
export type InvalidReason = typeof InvalidReasons[number]

/**
 * Checks an entry against its owner's key. Implemented where the libp2p key types live
 * (`@llmesh/mesh`); this package stays free of them. Must not throw.
 */
export interface RecordVerifier {
  /**
   * `entry` has passed its section's schema and sits under its own key; `content` is
   * entryContent(section, entry), which names the section, so checking `entry.sig` over it is
   * all the domain separation needs. `section` is absent where a caller checks a node record.
   */
  verify: (entry: SignedEntry, content: Uint8Array, section?: Section) => Exclude<InvalidReason, 'schema' | 'key-mismatch'> | undefined
}

/** Signs this peer's own entry content (entryContent: it names the section) with its key. */
export interface RecordSigner {
  sign: (content: Uint8Array) => string
}

/**
 * Domain separation: the first line of what is signed names the section, so a signature over
 * an entry of one section can never be taken for one of another, nor for anything else. The
 * node record's line is the one records were signed with before the other sections existed:
 * changing it would void every stored signature.
 */
const CONTEXTS: Readonly<Record<Section, string>> = {
  nodes: 'llmesh-node-record/1\n',
  placements: 'llmesh-placements-entry/1\n',
  pins: 'llmesh-pins-entry/1\n'
}

/**
 * The bytes an owner signs and everyone verifies: the section's context line, then the entry as
 * deterministic JSON (object keys sorted at every level, `sig` left out, `undefined` members
 * left out as JSON.stringify does; JSON escapes every newline, so the context line cannot be
 * forged from inside the entry). Computed over the stored value, not a parsed copy, so schema
 * defaults cannot change what was signed. Throws on values JSON cannot carry (bigint).
 */
export function entryContent (section: Section, entry: UnsignedSectionEntries[Section] | SignedEntry | Record<string, unknown>): Uint8Array {
  const { sig: _sig, ...rest } = entry as Record<string, unknown>
  return new TextEncoder().encode(CONTEXTS[section] + canonicalJson(rest))
}

/** entryContent of a node record. */
export function recordContent (record: UnsignedNodeRecord | Record<string, unknown>): Uint8Array {
  return entryContent(NODES, record)
}

function canonicalJson (value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v == null || typeof v !== 'object' || Array.isArray(v)) return v
    const sorted: Record<string, unknown> = Object.create(null) as Record<string, unknown>
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k]
    return sorted
  }) ?? 'null'
}
