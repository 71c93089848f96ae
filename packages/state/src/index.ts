export { ClusterDoc, REMOTE_ORIGIN, type ApplyResult, type ClusterDocOptions, type ClusterDocStats, type OwnSection, type RejectReason } from './cluster-doc.js'
export {
  InvalidReasons, NODES, PINS, PLACEMENTS, SECTIONS, entryContent, recordContent,
  type InvalidReason, type RecordSigner, type RecordVerifier, type Section, type SectionEntries, type SignedEntry, type UnsignedSectionEntries
} from './record-trust.js'
export * from './constants.js'
export { NEVER_PRUNE, mayPrune, pruneRule, type PruneFacts, type PruneRule } from './prune-rule.js'
