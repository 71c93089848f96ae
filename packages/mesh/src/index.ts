export { Mesh, type MeshInit, type MeshStats, type StreamHandler } from './mesh.js'
export { Membership, MemberStates, LAN_TIMINGS, type Member, type MemberState, type MembershipTimings } from './membership.js'
export { loadOrCreateKey, peerIdOfKey } from './identity.js'
export { checkPrivateFile, ensurePrivateDir, removeStaleTempFiles, writeFileDurable, writeFileExclusive, UnsafeFileError } from './files.js'
export * from './constants.js'
export {
  P2pConfigSchema, MembershipConfigSchema, PeerLimitsConfigSchema, type P2pConfig, type MembershipConfig, type PeerLimitsConfig
} from './config.js'
export {
  InferLimits, InferRefusals, InferStreams, requestInfer, serveInfer,
  type InferLimitsInit, type InferRefusal, type InferReply, type InferResponse, type InferTimeouts, type ServeInferGuard
} from './infer-stream.js'
export { ClampReasons, HeartbeatRate, clampHeartbeat, recordSlots, type ClampReason, type RecordLookup } from './heartbeat-bounds.js'
export { CLUSTER_KEY_BYTES, connectionSecret, formatClusterKey, mdnsServiceTag, newClusterKey, parseClusterKey, swarmKey } from './cluster-key.js'
export { recordSigner, recordVerifier } from './record-trust.js'
export { MemoryHub, MemoryTransport } from './memory-transport.js'
export type { Channel, ChannelOptions, ConnectionInfo, DialTarget, Transport, TransportEvents } from './transport.js'
export { Libp2pTransport, type Libp2pTransportInit, type MdnsInit } from './libp2p-transport.js'
export { DocSync, type DocSyncInit } from './doc-sync.js'
export { Heartbeats, type HeartbeatsInit } from './heartbeats.js'
export { Dialer, redialDelay, type DialerInit } from './dialer.js'
export { Pruner, type PrunerInit } from './pruner.js'
export { InferChannel } from './infer.js'
export {
  RpcTunnels, RpcTunnelHeaderSchema, RpcTunnelRefusals, RpcTunnelReplySchema,
  type RpcResolve, type RpcTarget, type RpcTunnelHeader, type RpcTunnelRefusal, type RpcTunnelReply, type RpcTunnelsInit, type Tunnel
} from './rpc-tunnel.js'
export { PATCHED_VERSIONS, installedVersion } from './patches.js'
