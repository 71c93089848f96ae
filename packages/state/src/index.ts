export { ClusterDoc, NODES, REMOTE_ORIGIN, type ApplyResult, type ClusterDocOptions, type ClusterDocStats, type RejectReason } from './cluster-doc.js'
export { InvalidReasons, recordContent, type InvalidReason, type RecordSigner, type RecordVerifier } from './record-trust.js'
export * from './constants.js'
export { NEVER_PRUNE, mayPrune, pruneRule, type PruneFacts, type PruneRule } from './prune-rule.js'
