export { footprint, footprintBytes, type Footprint } from './footprint.js'
export { hostModelMemBytes, hostRoom, isPinned, type HostRoom, type ModelMemConfig, type RoomView } from './room.js'
