export { ClusterDoc, NODES, REMOTE_ORIGIN, type ApplyResult, type RejectReason } from './cluster-doc.js'
