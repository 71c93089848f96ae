export { Mesh, type MeshInit, type StreamHandler } from './mesh.js'
export { loadOrCreateKey, peerIdOfKey } from './identity.js'
export * from './constants.js'
export { requestInfer, serveInfer, type InferReply, type InferResponse } from './infer-stream.js'
