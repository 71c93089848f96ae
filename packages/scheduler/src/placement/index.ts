export { footprint, footprintBytes, type Footprint } from './footprint.js'
export { hostModelMemBytes, hostRoom, isPinned, type HostRoom, type ModelMemConfig, type RoomView } from './room.js'
export { planCold, placementCandidates, type PlacementView, type ColdPlan, type ColdPlanOptions, type PlacementCandidate } from './plan.js'
export { chooseEvictions, type LocalRunnerUse, type EvictionChoice } from './evict.js'
