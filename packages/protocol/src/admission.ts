/**
 * A host's admission figures at one moment. The scheduler's `Admission` is their one source (the
 * agent's LocalServing sums its runners' admissions); the heartbeat (`PeerMetrics`) and a BUSY
 * answer (`BusyError`, the ERROR frame's `admission`) carry them to the routers.
 */
export interface AdmissionSnapshot {
  /** requests holding a slot now */
  slotsBusy: number
  /** parallel slots of the host's ready runners */
  slotsTotal: number
  /** requests waiting for a slot */
  queueDepth: number
}
