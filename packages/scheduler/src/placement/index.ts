export { footprint, footprintBytes, gib, type Footprint } from './footprint.js'
export { hostModelMemBytes, hostRoom, isPinned, type HostRoom, type ModelMemConfig, type RoomView } from './room.js'
export { planCold, placementCandidates, type PlacementView, type ColdPlan, type ColdPlanOptions, type PlacementCandidate } from './plan.js'
export { chooseEvictions, type LocalRunnerUse, type EvictionChoice } from './evict.js'
export {
  decideReplicas, scaleDown, idleUnload, type ReplicaInput, type ReplicaState, type IdleState, type ReplicaStart
} from './replicas.js'
export { planSplit, type SplitPlan, type SplitMember, type SplitOptions } from './split.js'
