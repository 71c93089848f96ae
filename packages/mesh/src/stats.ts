import { ClampReasons, type ClampReason } from './heartbeat-bounds.js'
import type { InferRefusal } from './infer-stream.js'

/** Counters a test or `llmesh status` can read. */
export interface MeshStats {
  heartbeatsSent: number
  /** identify exchanges completed (new connections, identify pushes) */
  identified: number
  heartbeatsReceived: number
  heartbeatsDropped: number
  deltasPublished: number
  deltasReceived: number
  deltasRejected: number
  syncs: number
  bytesPublished: number
  bytesReceived: number
  /** exceptions caught in a timer or handler that handles peer data (each also logged) */
  handlerErrors: number
  /** heartbeats dropped because their peer sent more than MAX_HEARTBEATS_IN_PER_SEC */
  heartbeatsRateLimited: number
  /** heartbeat figures held to their bounds, by reason (see clampHeartbeat) */
  heartbeatClamps: Record<ClampReason, number>
  /** inbound infer streams and requests refused or cut, by reason (see InferLimits) */
  inferRefused: Record<InferRefusal, number>
}

/** Zeroed counters; `inferRefused` is the InferLimits' own record. */
export function newMeshStats (inferRefused: Record<InferRefusal, number>): MeshStats {
  return {
    heartbeatsSent: 0, identified: 0, heartbeatsReceived: 0, heartbeatsDropped: 0, deltasPublished: 0, deltasReceived: 0,
    deltasRejected: 0, syncs: 0, bytesPublished: 0, bytesReceived: 0, handlerErrors: 0, heartbeatsRateLimited: 0,
    heartbeatClamps: Object.fromEntries(ClampReasons.map((r) => [r, 0])) as Record<ClampReason, number>,
    inferRefused
  }
}

/** Runs a timer body or handler that touches peer data: nothing it throws may take the agent down. */
export function guarded (stats: MeshStats, log: { warn: (obj: object, msg: string) => void }, what: string, fn: () => void): void {
  try {
    fn()
  } catch (err) {
    stats.handlerErrors++
    log.warn({ err, what }, 'handler failed')
  }
}
