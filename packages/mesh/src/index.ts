export { Mesh, type MeshInit, type MeshStats, type StreamHandler } from './mesh.js'
export { Membership, MemberStates, LAN_TIMINGS, type Member, type MemberState, type MembershipTimings } from './membership.js'
export { loadOrCreateKey, peerIdOfKey } from './identity.js'
export { checkPrivateFile, ensurePrivateDir, removeStaleTempFiles, writeFileDurable, UnsafeFileError } from './files.js'
export * from './constants.js'
export {
  InferLimits, InferRefusals, InferStreams, requestInfer, serveInfer,
  type InferLimitsInit, type InferRefusal, type InferReply, type InferResponse, type InferTimeouts, type ServeInferGuard
} from './infer-stream.js'
export { ClampReasons, HeartbeatRate, clampHeartbeat, recordSlots, type ClampReason, type RecordLookup } from './heartbeat-bounds.js'
export { CLUSTER_KEY_BYTES, connectionSecret, formatClusterKey, mdnsServiceTag, newClusterKey, parseClusterKey, swarmKey } from './cluster-key.js'
export { recordSigner, recordVerifier } from './record-trust.js'
